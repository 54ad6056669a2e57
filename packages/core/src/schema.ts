import { z } from 'zod';

const positiveInt = z.number().int().positive();
const probability = z.number().min(0).max(1);
const range = z
  .tuple([z.number().positive(), z.number().positive()])
  .refine(([lo, hi]) => lo <= hi, 'the first number must not exceed the second');

export const AugmentationSchema = z
  .object({
    /** Random resized crop to `size`, area fraction in `scale`, aspect ratio in `ratio`. */
    crop: z
      .object({
        size: positiveInt.optional(),
        scale: range.default([0.2, 1]),
        ratio: range.default([3 / 4, 4 / 3]),
      })
      .strict()
      .default({}),
    /** Probability of a horizontal flip. */
    flip: probability.default(0.5),
    /**
     * Colour jitter, applied with probability p (1 = always, MoCo v1): brightness,
     * contrast and saturation factors from [1-s, 1+s], hue shift from [-h, h]
     * (fraction of a turn; 0 <= h <= 0.5). Saturation and hue act on RGB only.
     */
    jitter: z
      .object({
        brightness: z.number().min(0).default(0.4),
        contrast: z.number().min(0).default(0.4),
        saturation: z.number().min(0).default(0),
        hue: z.number().min(0).max(0.5).default(0),
        p: probability.default(0.8),
      })
      .strict()
      .default({}),
    /** Probability of converting a view to grayscale (MoCo v1/v2: 0.2); RGB only. */
    grayscale: probability.default(0),
    /** Gaussian blur with sigma from `sigma` (MoCo v2: [0.1, 2], p 0.5); kernel about 10% of the side. */
    blur: z
      .object({ p: probability.default(0), sigma: range.default([0.1, 2]) })
      .strict()
      .default({}),
  })
  .strict();

export const ExperimentSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .regex(/^[\w.-]+$/, 'use letters, digits, ".", "_" and "-" only'),
    seed: z.number().int().min(0).default(0),
    /**
     * Method plugins to load besides the built-in ones: package names, or paths
     * (relative to this file) of a module or folder whose default export is a
     * plugin or a function of the Contrast API returning one.
     */
    plugins: z.array(z.string().min(1)).default([]),
    data: z
      .object({
        dataset: z.string().default('fashion-mnist'),
        /** Folder with the dataset files; default depends on the dataset. */
        root: z.string().optional(),
        /** Train on the first n samples of a fixed permutation (0 = all). */
        trainSubset: z.number().int().min(0).default(0),
        dropLast: z.boolean().default(true),
        /** image-folder: images are resized to this side on load. */
        imageSize: positiveInt.default(64),
        /** image-folder: fail on an unreadable file instead of skipping and counting it. */
        strict: z.boolean().default(false),
        /**
         * image-folder: a file list to train on instead of scanning `root`: a `.txt`
         * with one image path a line, or a `.csv` whose header names a `path` column
         * and optionally a `label` column (class names). Relative paths are relative
         * to the list's folder.
         */
        files: z.string().min(1).optional(),
        /**
         * image-folder: where labels come from. 'auto': the list's `label` column, else
         * the class sub-folders of a `train/` + `test/` layout, else none; 'folders': the
         * first sub-folder under the training folder is the class; 'csv'; 'none'.
         */
        labels: z.enum(['auto', 'folders', 'csv', 'none']).default('auto'),
        /**
         * image-folder: training images held out (a fixed choice by path hash, never
         * trained on) as the test split when there is none (no `test/` or `val/`
         * folder, no eval.test): alignment/uniformity, and kNN when labelled.
         * Default 1000 then; a test split present refuses it.
         */
        holdout: z.number().int().min(0).optional(),
        /** image-folder: labelled images for kNN and the linear probe (decoded into memory). */
        eval: z
          .object({
            /**
             * The kNN bank and the linear probe's training set: a folder of class
             * sub-folders or a `.csv` list with a `label` column. Default: the training
             * images themselves when they are labelled.
             */
            train: z.string().min(1).optional(),
            /** The evaluated images, same forms. Default: the root's `test/` or `val/`, else the held-out images. */
            test: z.string().min(1).optional(),
            /** Decode at most this many eval.train images (a fixed choice by path hash; 0 = all). */
            trainSize: z.number().int().min(0).default(10000),
          })
          .strict()
          .default({}),
        /**
         * image-folder: train on shard `index` of `count` disjoint shards of the index
         * (each file in one shard, by path hash): runs on different shards never read
         * the same file. Sample indices number the shard's images.
         */
        shard: z
          .object({ index: z.number().int().min(0), count: positiveInt })
          .strict()
          .refine((s) => s.index < s.count, {
            message: 'must be smaller than shard.count (shards are numbered from 0)',
            path: ['index'],
          })
          .optional(),
        prefetch: z.number().int().min(0).default(2),
        augmentation: AugmentationSchema.default({}),
      })
      .strict()
      .default({}),
    model: z
      .object({
        encoder: z.string().default('resnet18'),
        /** Width multiplier: base width 64 * width. */
        width: z.number().positive().default(1),
        stem: z.enum(['cifar', 'imagenet']).default('cifar'),
        /**
         * 'linear' (MoCo v1's replaced fc), 'mlp' (Linear-ReLU-Linear, MoCo v2 /
         * SimCLR) or 'mlp-bn' (Linear-BN-ReLU per hidden layer, then Linear: BYOL's
         * projector; SimSiam's with 3 layers and an output BN).
         */
        head: z.enum(['linear', 'mlp', 'mlp-bn']).default('linear'),
        /** Hidden width of the MLP head (0 = the backbone's feature width). */
        hiddenDim: z.number().int().min(0).default(0),
        /** Linear layers of an MLP head (2 in MoCo v2 / BYOL, 3 in SimSiam on ImageNet). */
        headLayers: z.number().int().min(2).default(2),
        /** BN (without affine) on the head's output ('mlp-bn' only; SimSiam's projector). */
        headOutputBn: z.boolean().default(false),
        dim: positiveInt.default(128),
        /**
         * BatchNorm splits in training mode (MoCo's SplitBatchNorm, 8 in the CIFAR demo);
         * with the key shuffle this is shuffle BN on one device. 1 = plain BN.
         */
        bnSplits: positiveInt.default(1),
      })
      .strict()
      .default({}),
    strategy: z.object({ name: z.string().min(1) }).passthrough(),
    loss: z
      .object({
        /** A named loss of the kind the method takes (default: the method's own). */
        name: z.string().optional(),
        /**
         * tau (default: the method's, 0.1 for the built-in contrastive methods):
         * 0.07 in MoCo v1, 0.2 in v2, 0.1 in the CIFAR demo. Methods without a
         * temperature (BYOL, SimSiam) refuse it.
         */
        temperature: z.number().positive().optional(),
        /**
         * Two-way loss: each view is also the query for the other's key
         * (loss = l(q1, k2) + l(q2, k1), the CIFAR demo); both keys are enqueued, once.
         * Default: the method's (on for MoCo v3, BYOL and SimSiam, off otherwise).
         */
        symmetric: z.boolean().optional(),
      })
      .strict()
      .default({}),
    optim: z
      .object({
        batchSize: positiveInt.default(256),
        epochs: positiveInt.default(1),
        /** Stop after this many steps in total (0 = run all epochs). */
        maxSteps: z.number().int().min(0).default(0),
        lr: z.number().positive().default(0.03),
        momentum: z.number().min(0).max(1).default(0.9),
        weightDecay: z.number().min(0).default(1e-4),
        schedule: z.enum(['cosine', 'constant', 'step']).default('cosine'),
        /** Epochs at which the 'step' schedule multiplies the lr by 0.1 (MoCo v1: [120, 160]). */
        milestones: z.array(z.number().positive()).default([]),
        /** Linear lr warmup over this many epochs (0 = none). */
        warmupEpochs: z.number().min(0).default(0),
        /** 'sgd' (MoCo v1/v2) or 'lars' (SimCLR, MoCo v3: large batches). */
        optimizer: z.enum(['sgd', 'lars']).default('sgd'),
        /** LARS trust coefficient eta. */
        larsEta: z.number().positive().default(0.001),
      })
      .strict()
      .default({}),
    eval: z
      .object({
        knn: z
          .object({
            k: positiveInt.default(200),
            t: z.number().positive().default(0.1),
            /** Evaluate every n epochs (0 = only at the end). */
            every: z.number().int().min(0).default(1),
            /** Use the first n training images as the bank (0 = all). */
            bankSize: z.number().int().min(0).default(0),
            /** Evaluate the first n test images (0 = all). */
            testSize: z.number().int().min(0).default(0),
          })
          .strict()
          .default({}),
        /** Also report kNN on raw pixels and on a randomly initialised encoder. */
        baselines: z.boolean().default(true),
        /** Alignment and uniformity (Wang & Isola) on this many test images at the end (0 = off). */
        alignUniform: z.number().int().min(0).default(1000),
      })
      .strict()
      .default({}),
    checkpoint: z
      .object({
        /** Also checkpoint every n steps (0 = only at epoch ends and on interrupt). */
        every: z.number().int().min(0).default(0),
        /** How many of the latest checkpoints to keep. */
        keep: positiveInt.default(3),
      })
      .strict()
      .default({}),
    tracking: z
      .object({
        /** Where run directories are created. */
        dir: z.string().default('runs'),
        /** Print a progress line every n steps when stderr is not a terminal. */
        logEvery: positiveInt.default(20),
        /**
         * MLflow tracking server (http://host:port). Empty: MLFLOW_TRACKING_URI when
         * set, else only the local run directory.
         */
        uri: z
          .string()
          .default('')
          .refine((u) => u === '' || /^https?:\/\//.test(u), {
            message: 'must be an http:// or https:// address of an MLflow server, or empty',
          }),
        /** MLflow experiment name (default: the experiment's name). */
        experiment: z.string().default(''),
        /** Seconds between background uploads to the tracking server. */
        uploadEvery: z.number().positive().default(2),
        /** Seconds a finishing run keeps trying an unreachable server before leaving the rest spooled. */
        uploadWait: z.number().min(0).default(20),
      })
      .strict()
      .default({}),
  })
  .strict();

export type ExperimentConfig = z.infer<typeof ExperimentSchema>;
export type ExperimentInput = z.input<typeof ExperimentSchema>;
export type AugmentationConfig = z.infer<typeof AugmentationSchema>;
