import { z } from 'zod';

const positiveInt = z.number().int().positive();
const probability = z.number().min(0).max(1);
const range = z
  .tuple([z.number().positive(), z.number().positive()])
  .refine(([lo, hi]) => lo <= hi, 'the first number must not exceed the second');

/**
 * The `model` fields every encoder shares: which encoder, and the projection
 * head on top of it. An encoder's own fields (a ResNet's width and stem, a
 * ViT's patch size and depth) are validated by its registry entry's schema.
 */
export const ModelSchema = z
  .object({
    encoder: z
      .string()
      .default('resnet18')
      .describe(
        "Backbone, by name: resnet18, resnet34, resnet50, convnet (a small ConvNet), vit (a Vision Transformer; vit-tiny, vit-small) or an encoder a plugin adds. Each has its own fields in this section (ResNets: width, stem; vit: patchSize, embedDim, depth, heads, ...), listed under 'Encoders' below.",
      ),
    head: z
      .enum(['linear', 'mlp', 'mlp-bn'])
      .default('linear')
      .describe(
        "Projection head: 'linear' (MoCo v1's replaced fc), 'mlp' (Linear-ReLU-Linear, MoCo v2 / SimCLR) or 'mlp-bn' (Linear-BN-ReLU per hidden layer, then Linear: BYOL's projector; SimSiam's with 3 layers and an output BN).",
      ),
    hiddenDim: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe("Hidden width of the MLP head (0 = the backbone's feature width)."),
    headLayers: z
      .number()
      .int()
      .min(2)
      .default(2)
      .describe('Linear layers of an MLP head (2 in MoCo v2 / BYOL, 3 in SimSiam on ImageNet).'),
    headOutputBn: z
      .boolean()
      .default(false)
      .describe("BN (without affine) on the head's output ('mlp-bn' only; SimSiam's projector)."),
    dim: positiveInt
      .default(128)
      .describe('Embedding dimension of the head output (128 in MoCo v1/v2).'),
    bnSplits: positiveInt
      .default(1)
      .describe(
        "BatchNorm splits in training mode (MoCo's SplitBatchNorm, 8 in the CIFAR demo); with the key shuffle this is shuffle BN on one device. 1 = plain BN.",
      ),
  })
  .strict();

export const AugmentationSchema = z
  .object({
    crop: z
      .object({
        size: positiveInt
          .optional()
          .describe('Output side in pixels (default: the dataset image side).'),
        scale: range
          .default([0.2, 1])
          .describe('Area fraction of the crop, drawn uniformly (torchvision RandomResizedCrop).'),
        ratio: range
          .default([3 / 4, 4 / 3])
          .describe('Aspect ratio range, drawn log-uniformly (torchvision RandomResizedCrop).'),
        resize: z
          .enum(['torchvision', 'crop-and-resize'])
          .default('torchvision')
          .describe(
            "How the crop is resized to `size`. 'torchvision' (default): RandomResizedCrop's bilinear resize with half-pixel centres, edge pixels held, and antialiasing when downscaling (PIL's filter; torchvision's antialias=True). 'crop-and-resize': the earlier behaviour, tf.image.cropAndResize with the crop's corner pixel centres mapped onto the output's corners and no antialiasing (slightly sharper, smaller crops).",
          ),
      })
      .strict()
      .default({})
      .describe(
        'Random resized crop to `size`, area fraction in `scale`, aspect ratio in `ratio` (torchvision).',
      ),
    flip: probability.default(0.5).describe('Probability of a horizontal flip.'),
    jitter: z
      .object({
        brightness: z
          .number()
          .min(0)
          .default(0.4)
          .describe('Brightness factor drawn from [1-s, 1+s] (MoCo v1: 0.4).'),
        contrast: z
          .number()
          .min(0)
          .default(0.4)
          .describe('Contrast factor drawn from [1-s, 1+s] (MoCo v1: 0.4).'),
        saturation: z
          .number()
          .min(0)
          .default(0)
          .describe('Saturation factor drawn from [1-s, 1+s]; RGB only (MoCo v1: 0.4).'),
        hue: z
          .number()
          .min(0)
          .max(0.5)
          .default(0)
          .describe(
            'Hue shift drawn from [-h, h], a fraction of a turn; RGB only (MoCo v1: 0.4, v2: 0.1).',
          ),
        p: probability
          .default(0.8)
          .describe('Probability of applying the jitter (1 = always, MoCo v1; 0.8 in MoCo v2).'),
        semantics: z
          .enum(['torchvision', 'fixed-order'])
          .default('torchvision')
          .describe(
            "'torchvision' (default): ColorJitter's semantics: the four adjustments in a random order drawn per view, each followed by a clamp to [0, 1]; contrast blends with the mean of the view's grayscale; hue is a shift in HSV. 'fixed-order': the earlier behaviour: brightness, contrast, saturation, hue always in that order, one clamp after contrast (none after brightness), contrast around the mean over all channels, hue as a rotation in YIQ.",
          ),
      })
      .strict()
      .default({})
      .describe(
        'Colour jitter, applied with probability p: brightness, contrast and saturation factors from [1-s, 1+s], hue shift from [-h, h] (torchvision ColorJitter).',
      ),
    grayscale: probability
      .default(0)
      .describe('Probability of converting a view to grayscale; RGB only (MoCo v1/v2: 0.2).'),
    blur: z
      .object({
        p: probability.default(0).describe('Probability of a Gaussian blur (MoCo v2: 0.5).'),
        sigma: range.default([0.1, 2]).describe('Blur sigma range in pixels (MoCo v2: [0.1, 2]).'),
        kernel: z
          .enum(['pil', 'gaussian'])
          .default('pil')
          .describe(
            "'pil' (default): MoCo v2's blur, PIL's ImageFilter.GaussianBlur(radius = sigma): three passes of an extended box filter per axis whose variance adds up to sigma^2, edge pixels repeated. 'gaussian': the earlier behaviour, a sampled Gaussian truncated to an odd kernel of about 10% of the side (3 taps at 28 px), reflect padding; much weaker than PIL's at large sigma on small images.",
          ),
      })
      .strict()
      .default({})
      .describe('Gaussian blur (MoCo v2 aug+).'),
    solarize: probability
      .default(0)
      .describe(
        "Probability of solarizing a view: pixels >= 0.5 (on [0, 1]) become 1 - x, torchvision's RandomSolarize(threshold=0.5), PIL's solarize at 128 on 8-bit images (BYOL: 0 for view 1, 0.2 for view 2).",
      ),
  })
  .strict();

/** Group options by parameter name (`optim.groups`): every matching rule applies in order over the method's options (a later rule's fields win). */
const GroupRuleSchema = z
  .object({
    match: z
      .string()
      .min(1)
      .describe(
        "A regular expression on the parameter's checkpoint name (`encoder/stem/conv/kernel`, `predictor/...`); the rule applies to every parameter it matches, and one that matches none of the trained parameters is refused.",
      ),
    lrScale: z.number().min(0).optional().describe('Multiplies their lr.'),
    fixedLr: z.boolean().optional().describe('Train them at the base (unscheduled) lr.'),
    decay: z.boolean().optional().describe('Whether weight decay applies to them.'),
    frozenSteps: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Not updated (nor their optimizer state) for the first n steps.'),
    frozenEpochs: z
      .number()
      .min(0)
      .optional()
      .describe(
        "Not updated (nor their optimizer state) for the first n epochs (DINO's last layer, SwAV's prototypes: 1).",
      ),
    frozen: z.boolean().optional().describe("Never updated (MoCo v3's random patch projection)."),
  })
  .strict();

/** The `optim` fields every optimizer shares; an optimizer's own fields sit beside them. */
export const OptimSchema = z.object({
  batchSize: positiveInt.default(256).describe('Images per step N (256 in MoCo v1/v2).'),
  epochs: positiveInt.default(1).describe('Passes over the training set.'),
  maxSteps: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe('Stop after this many steps in total (0 = run all epochs).'),
  lr: z
    .number()
    .positive()
    .default(0.03)
    .describe('Base learning rate (0.03 for batch 256 in MoCo v1/v2).'),
  weightDecay: z
    .number()
    .min(0)
    .default(1e-4)
    .describe(
      'Weight decay (1e-4 in MoCo v1/v2, 5e-4 in the CIFAR demo; 0.1 for MoCo v3 ViTs with adamw, 0.04 in DINO). Coupled (added to the gradient) in sgd and lars, decoupled in adamw.',
    ),
  weightDecayEnd: z
    .number()
    .min(0)
    .optional()
    .describe(
      'Weight decay at the last step: a half-cycle cosine from weightDecay to this over the run, per step (DINO: 0.04 to 0.4). Unset: constant.',
    ),
  decay: z
    .enum(['all', 'no-norm-bias'])
    .default('all')
    .describe(
      "Which parameters are decayed: 'all', or 'no-norm-bias': none of rank 1 (biases, norms' gamma and beta), as DINO and timm do (MoCo v3's main_moco.py decays every parameter). Group options override it.",
    ),
  schedule: z
    .enum(['cosine', 'constant', 'step'])
    .default('cosine')
    .describe("Learning-rate schedule: 'cosine' (MoCo v2), 'step' (MoCo v1) or 'constant'."),
  milestones: z
    .array(z.number().positive())
    .default([])
    .describe(
      "Epochs at which the 'step' schedule multiplies the lr by 0.1 (MoCo v1: [120, 160]).",
    ),
  warmupEpochs: z
    .number()
    .min(0)
    .default(0)
    .describe(
      'Linear lr warmup over this many epochs, then the schedule over the rest (0 = none; MoCo v3: 40, DINO: 10).',
    ),
  clipGradNorm: z
    .number()
    .min(0)
    .default(0)
    .describe(
      'Clip gradients to this L2 norm after the data-parallel all-reduce (0 = off; DINO: 3.0). See clipMode.',
    ),
  clipMode: z
    .enum(['global', 'per-parameter'])
    .default('global')
    .describe(
      "'global': one norm over all updated gradients, scaled by min(1, max / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_); 'per-parameter': each gradient scaled by its own norm so (DINO's clip_gradients).",
    ),
  groups: z
    .array(GroupRuleSchema)
    .default([])
    .describe(
      'Options for parameters by name: lr scale, fixed lr, decay on or off, frozen for some steps, some epochs or always. A later matching rule wins field by field.',
    ),
  optimizer: z
    .string()
    .min(1)
    .default('sgd')
    .describe(
      "The optimizer: 'sgd' (MoCo v1/v2), 'lars' (SimCLR, MoCo v3 with ResNets: large batches), 'adamw' (MoCo v3 and DINO with ViTs) or a plugin's. Its own fields are listed below.",
    ),
});

type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** Some fields of data.augmentation, each replacing the experiment's (nested sections field by field). */
export type AugmentationOverrides = DeepPartial<AugmentationConfig>;

/** The same fields as `schema`, every one optional and without its default (an override of it). */
function overridesOf(schema: z.ZodTypeAny): z.ZodTypeAny {
  const description = schema.description;
  let s = schema instanceof z.ZodDefault ? (schema.removeDefault() as z.ZodTypeAny) : schema;
  if (s instanceof z.ZodObject) {
    const shape = s.shape as Record<string, z.ZodTypeAny>;
    s = z
      .object(
        Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, overridesOf(v).optional()])),
      )
      .strict();
  }
  return description ? s.describe(description) : s;
}

const AugmentationOverridesSchema = overridesOf(AugmentationSchema) as z.ZodObject<
  Record<string, z.ZodTypeAny>,
  'strict'
>;

/**
 * One crop group of `data.views`: `count` crops of each image, drawn with the
 * experiment's augmentation overridden by the group's fields, then by the
 * crop's entry of `perCrop`.
 */
export interface ViewGroupConfig extends AugmentationOverrides {
  name: string;
  count: number;
  perCrop?: AugmentationOverrides[];
}

/** A group's overrides, each field described as what it overrides. */
const GroupOverridesSchema = z
  .object(
    Object.fromEntries(
      Object.entries(AugmentationOverridesSchema.shape).map(([k, v]) => [
        k,
        v.describe(
          `data.augmentation.${k} for this group's crops (the fields given replace the experiment's, nested ones one by one).`,
        ),
      ]),
    ),
  )
  .strict();

export const ViewGroupSchema = GroupOverridesSchema.extend({
  name: z
    .string()
    .regex(/^[A-Za-z][\w-]*$/, 'use a letter, then letters, digits, "_" and "-"')
    .describe("The group's name; a method reaches its crops by it ('global', 'local')."),
  count: positiveInt.describe('Crops of each image in this group (DINO: 2 global, 6-10 local).'),
  perCrop: z
    .array(AugmentationOverridesSchema)
    .optional()
    .describe(
      "Per-crop overrides over the group's settings, in crop order, at most `count` (BYOL's asymmetric pair: [{ blur: { p: 1 } }, { blur: { p: 0.1 }, solarize: 0.2 }]); crop.size stays the group's.",
    ),
}) as unknown as z.ZodType<ViewGroupConfig, z.ZodTypeDef, unknown>;

export const ExperimentSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .regex(/^[\w.-]+$/, 'use letters, digits, ".", "_" and "-" only')
      .describe('Experiment name: the run folder prefix and the default MLflow experiment.'),
    seed: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('Seed of every random stream (initialisation, data order, augmentation).'),
    plugins: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Method plugins to load besides the built-in ones: package names, or paths (relative to this file) of a module or folder whose default export is a plugin or a function of the Contrast API returning one.',
      ),
    data: z
      .object({
        dataset: z
          .string()
          .default('fashion-mnist')
          .describe(
            'fashion-mnist, cifar10, cifar100, stl10, stl10-unlabeled or image-folder (your images, streamed from disk: a folder, labelled or not, or a file list).',
          ),
        root: z
          .string()
          .optional()
          .describe(
            "Folder with the dataset files; default depends on the dataset (Fashion-MNIST: $CONTRAST_FASHION_MNIST, else Debian's /usr/share/datasets/fashion-mnist; others: data/<name>, image-folder: data/images).",
          ),
        trainSubset: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe(
            'Train on the first n samples of a fixed permutation (0 = all; image-folder: n images chosen by path hash).',
          ),
        dropLast: z
          .boolean()
          .default(true)
          .describe('Drop the last incomplete batch of each epoch (as the official MoCo loader).'),
        imageSize: positiveInt
          .default(64)
          .describe('image-folder: images are decoded and resized to this side (a square).'),
        strict: z
          .boolean()
          .default(false)
          .describe(
            'image-folder: fail on an unreadable file instead of skipping and counting it.',
          ),
        files: z
          .string()
          .min(1)
          .optional()
          .describe(
            "image-folder: a file list to train on instead of scanning `root`: a `.txt` with one image path a line, or a `.csv` whose header names a `path` column and optionally a `label` column (class names). Relative paths are relative to the list's folder.",
          ),
        labels: z
          .enum(['auto', 'folders', 'csv', 'none'])
          .default('auto')
          .describe(
            "image-folder: where labels come from. 'auto': the list's `label` column, else the class sub-folders of a `train/` + `test/` layout, else none; 'folders': the first sub-folder under the training folder is the class; 'csv': the list's `label` column; 'none': unlabelled (kNN and the linear probe need data.eval).",
          ),
        holdout: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe(
            'image-folder: training images held out (a fixed choice by path hash, never trained on) as the test split when there is none (no `test/` or `val/` folder, no eval.test): alignment/uniformity, and kNN when labelled. Default 1000 then; a test split present refuses it.',
          ),
        eval: z
          .object({
            train: z
              .string()
              .min(1)
              .optional()
              .describe(
                "The kNN bank and the linear probe's training set: a folder of class sub-folders or a `.csv` list with a `label` column. Default: the training images themselves when they are labelled.",
              ),
            test: z
              .string()
              .min(1)
              .optional()
              .describe(
                "The evaluated images, same forms. Default: the root's `test/` or `val/`, else the held-out images.",
              ),
            trainSize: z
              .number()
              .int()
              .min(0)
              .default(10000)
              .describe(
                'Decode at most this many eval.train images (a fixed choice by path hash; 0 = all).',
              ),
          })
          .strict()
          .default({})
          .describe(
            'image-folder: labelled images for kNN and the linear probe (decoded into memory; the training images are streamed).',
          ),
        shard: z
          .object({
            index: z.number().int().min(0).describe("This run's shard, numbered from 0."),
            count: positiveInt.describe('Number of disjoint shards.'),
          })
          .strict()
          .refine((s) => s.index < s.count, {
            message: 'must be smaller than shard.count (shards are numbered from 0)',
            path: ['index'],
          })
          .optional()
          .describe(
            "image-folder: train on shard `index` of `count` disjoint shards of the index (each file in one shard, by path hash): runs on different shards never read the same file. Sample indices number the shard's images.",
          ),
        prefetch: z
          .number()
          .int()
          .min(0)
          .default(2)
          .describe(
            'Batches prepared ahead of the training step (0 = none); image-folder: batches decoded ahead, the bound of the decode queue.',
          ),
        augmentation: AugmentationSchema.default({}).describe(
          "The views' augmentation (MoCo v1 by default; MoCo v2 adds blur, stronger jitter); `views` groups override it.",
        ),
        views: z
          .array(ViewGroupSchema)
          .min(1)
          .optional()
          .describe(
            "Multi-crop: groups of crops, in order (SwAV, DINO: 2 global crops, then local crops of a smaller size and scale range), each with its own overrides of `augmentation`. The batch holds one tensor per crop in group order; x1 and x2 are the first group's first two crops, so the first group has at least 2. Default (unset): one group 'global' of 2 crops with `augmentation`, today's two views.",
          ),
      })
      .strict()
      .default({})
      .describe('Dataset, subset and input pipeline.'),
    model: ModelSchema.passthrough()
      .default({})
      .describe(
        "The encoder: backbone and projection head. The encoder's own fields (model.encoder's options) sit beside the shared ones.",
      ),
    strategy: z
      .object({
        name: z
          .string()
          .min(1)
          .describe('The method (a strategy plugin); its own fields are listed below.'),
      })
      .passthrough()
      .describe(
        'The method: one strategy plugin (built-in or listed in plugins) and its settings.',
      ),
    loss: z
      .object({
        name: z
          .string()
          .optional()
          .describe(
            "A named loss of a kind the method accepts: infonce, nce (explicit negatives), nt-xent (in-batch), normalized-mse, negative-cosine (regression), or a plugin's (default: the method's own).",
          ),
        temperature: z
          .number()
          .positive()
          .optional()
          .describe(
            "tau (default: the method's, 0.1 for the built-in contrastive methods): 0.07 in MoCo v1, 0.2 in v2, 0.1 in the CIFAR demo. Methods without a temperature (BYOL, SimSiam) refuse it.",
          ),
        symmetric: z
          .boolean()
          .optional()
          .describe(
            "Two-way loss: each view is also the query for the other's key (loss = l(q1, k2) + l(q2, k1), the CIFAR demo); both keys are enqueued, once. Default: the method's (on for MoCo v3, BYOL and SimSiam, off otherwise).",
          ),
      })
      // the selected loss's own options (`lambda` of a Barlow Twins loss) are checked by its
      // schema once the loss is known (resolveLoss): a field no loss knows is refused there
      .passthrough()
      .default({})
      .describe(
        "The loss: contrastive (InfoNCE and kin), a regression of predictions onto targets (BYOL, SimSiam), or a plugin's kind; any other field is an option of the selected loss (`loss: { name: barlow-twins, lambda: 0.005 }`), validated by that loss's own schema.",
      ),
    optim: OptimSchema.passthrough()
      .default({})
      .describe(
        "Optimizer and schedule. `optim.optimizer` names an optimizer of the registry (sgd, lars, adamw, or a plugin's); its own fields (sgd's `momentum`, lars's `momentum` and `larsEta`, adamw's `betas` and `eps`) sit beside the shared ones below and are listed per optimizer.",
      ),
    eval: z
      .object({
        knn: z
          .object({
            k: positiveInt
              .default(200)
              .describe('Neighbours (200 in InstDisc and the CIFAR demo).'),
            t: z
              .number()
              .positive()
              .default(0.1)
              .describe('Temperature of the vote weight exp(sim / t) (0.1 in the CIFAR demo).'),
            every: z
              .number()
              .int()
              .min(0)
              .default(1)
              .describe('Evaluate every n epochs (0 = only at the end).'),
            bankSize: z
              .number()
              .int()
              .min(0)
              .default(0)
              .describe('Use the first n training images as the bank (0 = all).'),
            testSize: z
              .number()
              .int()
              .min(0)
              .default(0)
              .describe('Evaluate the first n test images (0 = all).'),
          })
          .strict()
          .default({})
          .describe(
            'Weighted kNN monitor on pooled backbone features (InstDisc): bank = training images, queries = test images.',
          ),
        baselines: z
          .boolean()
          .default(true)
          .describe('Also report kNN on raw pixels and on a randomly initialised encoder.'),
        alignUniform: z
          .number()
          .int()
          .min(0)
          .default(1000)
          .describe(
            'Alignment and uniformity (Wang & Isola) on this many test images at the end (0 = off).',
          ),
        health: z
          .number()
          .int()
          .min(0)
          .default(1000)
          .describe(
            'Health checks at every epoch end on up to this many test images (0 = off): collapse (per-dimension std, effective rank, uniformity), a pretext task solved early (a BN shortcut), a loss stuck at its chance value.',
          ),
      })
      .strict()
      .default({})
      .describe('Evaluation during and after training.'),
    checkpoint: z
      .object({
        every: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe('Also checkpoint every n steps (0 = only at epoch ends and on a stop signal).'),
        keep: positiveInt.default(3).describe('How many of the latest checkpoints to keep.'),
      })
      .strict()
      .default({})
      .describe('Checkpoints (may change when resuming).'),
    tracking: z
      .object({
        dir: z.string().default('runs').describe('Where run directories are created.'),
        logEvery: positiveInt
          .default(20)
          .describe('Print a progress line every n steps when stderr is not a terminal.'),
        uri: z
          .string()
          .default('')
          .refine((u) => u === '' || u === 'off' || /^https?:\/\//.test(u), {
            message: "must be an http:// or https:// address of an MLflow server, 'off', or empty",
          })
          .describe(
            "MLflow tracking server (http://host:port). Empty: MLFLOW_TRACKING_URI when set (a resumed run: the server its folder records), else only the local run directory. 'off': no MLflow tracking, whatever MLFLOW_TRACKING_URI says.",
          ),
        experiment: z
          .string()
          .default('')
          .describe("MLflow experiment name (default: the experiment's name)."),
        uploadEvery: z
          .number()
          .positive()
          .default(2)
          .describe('Seconds between background uploads to the tracking server.'),
        uploadWait: z
          .number()
          .min(0)
          .default(20)
          .describe(
            'Seconds a finishing run keeps trying an unreachable server before leaving the rest spooled.',
          ),
      })
      .strict()
      .default({})
      .describe('Where runs are recorded (may change when resuming).'),
  })
  .strict();

export type ExperimentConfig = z.infer<typeof ExperimentSchema>;
export type ExperimentInput = z.input<typeof ExperimentSchema>;
export type AugmentationConfig = z.infer<typeof AugmentationSchema>;

/**
 * Config fields that are run settings, not hyperparameters: where and how a
 * run is stored, tracked, checkpointed, fed and measured, rather than what is
 * learned. A field (`data.root`) or a section (`eval.`). The MLflow tracker logs
 * them as run tags, not params, so runs of one recipe on two machines compare
 * equal in MLflow's compare view; every other field (seed, data.dataset,
 * data.trainSubset, data.augmentation, model, strategy, loss, optim) is a param.
 * `eval.` settings decide how a result is measured (kNN k, t, sizes), not the
 * model, so they are tags too and a run stays filterable on them.
 */
export const RUN_SETTINGS: readonly string[] = [
  'name',
  'plugins',
  'data.root',
  'data.strict',
  'data.prefetch',
  'eval.',
  'checkpoint.',
  'tracking.',
];
