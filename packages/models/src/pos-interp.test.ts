import { describe, expect, it } from 'vitest';
import { bicubicResizeMatrix, positionResampleMatrix } from './pos-interp.js';

// Reference rows: PyTorch 2's F.interpolate(mode='bicubic', align_corners=False,
// scale_factor=(h0 + 0.1) / g) of one-hot inputs in float64, as DINO's
// interpolate_pos_encoding calls it (printed once; 8 decimals).
const TORCH_1D: Record<string, number[][]> = {
  '4->2': [
    [0.55351744, 0.53053463, -0.08405207, 0],
    [0, -0.11069606, 0.76995262, 0.34074344],
  ],
  '4->3': [
    [0.87685459, 0.13665516, -0.01350974, 0],
    [-0.1040845, 0.67653087, 0.50784738, -0.08029375],
    [0, -0.04092574, 0.29265026, 0.74827549],
  ],
  '2->4': [
    [1.10629153, -0.10629153],
    [0.79217329, 0.20782671],
    [0.25833744, 0.74166256],
    [-0.09770017, 1.09770017],
  ],
};

describe("position resampling (DINO's interpolate_pos_encoding, bicubic)", () => {
  it("equals PyTorch's upsample_bicubic2d weights, down and up, border indices clamped", () => {
    for (const [key, rows] of Object.entries(TORCH_1D)) {
      const [g, h0] = key.split('->').map(Number) as [number, number];
      const m = bicubicResizeMatrix(g, (h0 + 0.1) / g);
      expect(m.length).toBe(h0);
      m.forEach((row, i) => {
        row.forEach((v, j) => expect(v, `${key} [${i}, ${j}]`).toBeCloseTo(rows[i]![j]!, 7));
      });
    }
  });

  it("Keys' kernel sums to 1 in every row (a constant embedding stays constant)", () => {
    for (const [g, h0] of [
      [4, 2],
      [4, 3],
      [7, 3],
      [2, 5],
    ] as const) {
      for (const row of bicubicResizeMatrix(g, (h0 + 0.1) / g)) {
        expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      }
    }
  });

  it('the 2-D matrix [h0 * w0, gh * gw] is the outer product of the two 1-D resizes, row-major', () => {
    const m = positionResampleMatrix(4, 4, 2, 3);
    expect(m.length).toBe(2 * 3 * 16);
    const [rh, rw] = [TORCH_1D['4->2']!, TORCH_1D['4->3']!];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++)
        for (let a = 0; a < 4; a++)
          for (let b = 0; b < 4; b++)
            expect(m[(i * 3 + j) * 16 + a * 4 + b]).toBeCloseTo(rh[i]![a]! * rw[j]![b]!, 6);
    // PyTorch's 2-D resize of the one-hot grid, first output position (4x4 -> 2x2)
    const torchRow0 = [
      0.30638155, 0.29366017, -0.04652429, 0, 0.29366017, 0.281467, -0.04459254, 0,
    ];
    const ours = positionResampleMatrix(4, 4, 2, 2);
    torchRow0.forEach((v, k) => expect(ours[k]).toBeCloseTo(v, 6));
  });
});
