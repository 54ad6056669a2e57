import { cpus, freemem, totalmem, type CpuInfo } from 'node:os';

/** MLflow's default sampling interval of system metrics (`sampling_interval=10` s). */
export const SYSTEM_METRICS_INTERVAL_MS = 10_000;

/**
 * The metric names, as MLflow's `SystemMetricsMonitor` logs them (`system/`
 * prefix, `mlflow/system_metrics/metrics/cpu_monitor.py`), plus the training
 * process's resident set size, which MLflow's monitor does not sample.
 */
export const SYSTEM_METRICS = {
  cpu: 'system/cpu_utilization_percentage',
  memoryMb: 'system/system_memory_usage_megabytes',
  memoryPercent: 'system/system_memory_usage_percentage',
  processRssMb: 'system/process_memory_rss_megabytes',
} as const;

interface CpuTimes {
  busy: number;
  total: number;
}

function cpuTimes(readCpus: () => CpuInfo[]): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const c of readCpus()) {
    const t = c.times;
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * Samples the machine and this process with Node's `os` and `process` APIs:
 * CPU utilisation of all cores since the previous sample (psutil's
 * `cpu_percent()`), memory in use (total - available, in MB of 10^6 bytes as
 * MLflow) and its percentage of the total, and this process's RSS (MB).
 * Values are rounded to 0.1 as MLflow rounds its aggregates.
 */
export class SystemMetricsSampler {
  private last: CpuTimes;

  /** @param readCpus the per-core times to read (`os.cpus`; replaceable in tests). */
  constructor(private readonly readCpus: () => CpuInfo[] = cpus) {
    this.last = cpuTimes(readCpus);
  }

  /** One sample: metric name -> value (see {@link SYSTEM_METRICS}). */
  sample(): Record<string, number> {
    const now = cpuTimes(this.readCpus);
    const dt = now.total - this.last.total;
    const cpu = dt > 0 ? (100 * (now.busy - this.last.busy)) / dt : 0;
    this.last = now;
    const total = totalmem();
    const used = total - freemem();
    return {
      [SYSTEM_METRICS.cpu]: round1(cpu),
      [SYSTEM_METRICS.memoryMb]: round1(used / 1e6),
      [SYSTEM_METRICS.memoryPercent]: round1((100 * used) / total),
      [SYSTEM_METRICS.processRssMb]: round1(process.memoryUsage.rss() / 1e6),
    };
  }
}

/**
 * Calls `emit` with a {@link SystemMetricsSampler} sample every `intervalMs`
 * (default MLflow's 10 s) until stop(). The timer never keeps the process alive.
 */
export class SystemMetricsMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly sampler = new SystemMetricsSampler();

  constructor(
    private readonly emit: (values: Record<string, number>) => void,
    readonly intervalMs = SYSTEM_METRICS_INTERVAL_MS,
  ) {}

  start(): void {
    if (this.timer || this.intervalMs <= 0) return;
    this.timer = setInterval(() => this.emit(this.sampler.sample()), this.intervalMs);
    this.timer.unref();
  }

  /** Stops sampling; with `final`, emits one last sample first (a short run gets at least one). */
  stop(final = false): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    if (final) this.emit(this.sampler.sample());
  }
}
