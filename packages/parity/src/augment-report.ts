import type { AugmentOptions, CaseResult } from './augment.js';

const f3 = (x: number) => x.toFixed(3);
const p = (x: number) => (x < 1e-4 ? x.toExponential(0) : x.toFixed(3));

/**
 * The augmentation section of the report: per case and statistic, Contrast's and
 * torchvision's mean (std) over views, the two-sample test and its p-value;
 * differences beyond sampling noise (p below the Bonferroni-corrected alpha)
 * listed by transform.
 */
export function augmentMarkdown(
  o: AugmentOptions,
  r: { cases: CaseResult[]; alpha: number },
): string {
  const flagged = r.cases.flatMap((c) =>
    c.tests
      .filter((t) => t.p < r.alpha)
      .map((t) => ({ transform: c.transform, name: c.name, stat: t.stat, p: t.p })),
  );
  const lines = [
    `## Augmentation parity: Contrast vs torchvision on the same images`,
    '',
    `${o.views} views per case (one per Fashion-MNIST training image; RGB cases colourise each image with ` +
      `two random colours), ${o.lossImages} image pairs for the frozen encoder's loss (the default ConvNet after ` +
      `150 MoCo steps, eval mode, NT-Xent tau 0.1 per batch of 256). Two-sample Kolmogorov-Smirnov tests ` +
      `(Welch's t-test for the per-batch loss); a difference is beyond sampling noise when p < ${r.alpha.toExponential(1)} ` +
      `(0.05, Bonferroni-corrected over ${r.cases.reduce((a, c) => a + c.tests.length, 0)} tests).`,
    '',
    flagged.length === 0
      ? '**No transform differs beyond sampling noise.**'
      : `**Beyond sampling noise:** ${flagged.map((f) => `${f.transform}: ${f.name}, ${f.stat} (p ${p(f.p)})`).join('; ')}`,
    '',
    '| transform | case | statistic | Contrast mean (std) | torchvision mean (std) | KS D / t | p |',
    '|---|---|---|---:|---:|---:|---:|',
  ];
  for (const c of r.cases) {
    for (const t of c.tests) {
      lines.push(
        `| ${c.transform} | ${c.name} | ${t.stat} | ${f3(t.contrast.mean)} (${f3(t.contrast.std)}) | ` +
          `${f3(t.torch.mean)} (${f3(t.torch.std)}) | ${f3(t.ks)} | ${p(t.p)}${t.p < r.alpha ? ' **' : ''} |`,
      );
    }
  }
  return lines.join('\n');
}
