import { totalmem, type CpuInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { SYSTEM_METRICS, SystemMetricsMonitor, SystemMetricsSampler } from './system.js';
import { systemMetricsIntervalMs } from './mlflow/tracker.js';

describe('system metrics', () => {
  it("samples MLflow's system/ metrics within their physical ranges", () => {
    const sampler = new SystemMetricsSampler();
    const end = Date.now() + 50;
    while (Date.now() < end); // keep a core busy between the two readings
    const s = sampler.sample();
    expect(Object.keys(s).sort()).toEqual(Object.values(SYSTEM_METRICS).sort());
    const cpu = s[SYSTEM_METRICS.cpu]!;
    expect(cpu).toBeGreaterThan(0); // this process spun for 50 ms
    expect(cpu).toBeLessThanOrEqual(100);
    const totalMb = totalmem() / 1e6;
    expect(s[SYSTEM_METRICS.memoryMb]).toBeGreaterThan(0);
    expect(s[SYSTEM_METRICS.memoryMb]).toBeLessThanOrEqual(totalMb);
    expect(s[SYSTEM_METRICS.memoryPercent]).toBeCloseTo(
      (100 * s[SYSTEM_METRICS.memoryMb]!) / totalMb,
      0,
    );
    const rss = s[SYSTEM_METRICS.processRssMb]!;
    expect(rss).toBeCloseTo(process.memoryUsage.rss() / 1e6, -1); // within 5 MB
  });

  it('CPU utilisation is the busy share of all cores between two samples', () => {
    const core = (user: number, sys: number, idle: number): CpuInfo => ({
      model: 'test',
      speed: 1,
      times: { user, nice: 0, sys, idle, irq: 0 },
    });
    const readings = [
      [core(100, 50, 850), core(0, 0, 1000)],
      [core(300, 150, 950), core(0, 0, 1000)], // core 0: 300 busy of 400; core 1: idle, no time
      [core(300, 150, 1050), core(100, 0, 1100)], // core 0: idle 100; core 1: 100 busy of 200
    ];
    const sampler = new SystemMetricsSampler(() => readings.shift()!);
    expect(sampler.sample()[SYSTEM_METRICS.cpu]).toBe(75); // 300 / 400
    expect(sampler.sample()[SYSTEM_METRICS.cpu]).toBeCloseTo(33.3, 5); // 100 / 300, rounded to 0.1
  });

  it('samples every interval until stopped, once more on a final stop', async () => {
    const seen: Record<string, number>[] = [];
    const m = new SystemMetricsMonitor((v) => seen.push(v), 20);
    m.start();
    await new Promise((r) => setTimeout(r, 110));
    m.stop(true);
    const n = seen.length;
    expect(n).toBeGreaterThanOrEqual(3); // ~5 ticks in 110 ms, plus the final sample
    await new Promise((r) => setTimeout(r, 60));
    expect(seen).toHaveLength(n); // nothing after stop
  });

  it("reads MLflow's environment variables for the interval", () => {
    expect(systemMetricsIntervalMs({})).toBe(10_000);
    expect(systemMetricsIntervalMs({ MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL: '2.5' })).toBe(2500);
    expect(systemMetricsIntervalMs({ MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING: 'false' })).toBe(0);
  });
});
