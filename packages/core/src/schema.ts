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
        /**
         * How the crop is resized to `size`. 'torchvision' (default): RandomResizedCrop's
         * bilinear resize with half-pixel centres, edge pixels held, and antialiasing when
         * downscaling (PIL's filter; torchvision's antialias=True). 'crop-and-resize': the
         * earlier behaviour, tf.image.cropAndResize with the crop's corner pixel centres
         * mapped onto the output's corners and no antialiasing (slightly sharper, smaller crops).
         */
        resize: z.enum(['torchvision', 'crop-and-resize']).default('torchvision'),
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
        /**
         * 'torchvision' (default): ColorJitter's semantics: the four adjustments in a
         * random order drawn per view, each followed by a clamp to [0, 1]; contrast
         * blends with the mean of the view's grayscale; hue is a shift in HSV.
         * 'fixed-order': the earlier behaviour: brightness, contrast, saturation, hue
         * always in that order, one clamp after contrast (none after brightness),
         * contrast around the mean over all channels, hue as a rotation in YIQ.
         */
        semantics: z.enum(['torchvision', 'fixed-order']).default('torchvision'),
      })
      .strict()
      .default({}),
    /** Probability of converting a view to grayscale (MoCo v1/v2: 0.2); RGB only. */
    grayscale: probability.default(0),
    /** Gaussian blur with probability p and sigma from `sigma` (MoCo v2: [0.1, 2], p 0.5). */
    blur: z
      .object({
        p: probability.default(0),
        sigma: range.default([0.1, 2]),
        /**
         * 'pil' (default): MoCo v2's blur, PIL's ImageFilter.GaussianBlur(radius = sigma):
         * three passes of an extended box filter per axis whose variance adds up to
         * sigma^2, edge pixels repeated. 'gaussian': the earlier behaviour, a sampled
         * Gaussian truncated to an odd kernel of about 10% of the side (3 taps at 28 px),
         * reflect padding; much weaker than PIL's at large sigma on small images.
         */
        kernel: z.enum(['pil', 'gaussian']).default('pil'),
      })
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
        /** 'linear' (MoCo v1's replaced fc) or 'mlp' (Linear-ReLU-Linear, MoCo v2 / SimCLR). */
        head: z.enum(['linear', 'mlp']).default('linear'),
        /** Hidden width of the MLP head (0 = the backbone's feature width). */
        hiddenDim: z.number().int().min(0).default(0),
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
        name: z.string().optional(),
        /** tau: 0.07 in MoCo v1, 0.2 in v2, 0.1 in the CIFAR demo. */
        temperature: z.number().positive().default(0.1),
        /**
         * Symmetric loss: each view is also the query for the other's key
         * (loss = l(q1, k2) + l(q2, k1), as the CIFAR demo); both keys are enqueued, once.
         * Needs a momentum key encoder.
         */
        symmetric: z.boolean().default(false),
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
