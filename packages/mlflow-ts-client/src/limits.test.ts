import { describe, expect, it } from 'vitest';
import {
  artifactProxyPath,
  authFromEnv,
  checkEntries,
  chunkLogBatch,
  LOG_BATCH_LIMITS,
  MlflowError,
  parseTrackingUri,
} from './index.js';

const points = (n: number) =>
  Array.from({ length: n }, (_, step) => ({ key: 'loss', value: step, timestamp: step, step }));
const pairs = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ key: `${prefix}${i}`, value: String(i) }));

describe('chunkLogBatch', () => {
  it.each([
    // [metrics, params, tags] -> requests as [metrics, params, tags]
    [[0, 0, 0], []],
    [[1000, 0, 0], [[1000, 0, 0]]],
    [
      [1001, 0, 0],
      [
        [1000, 0, 0],
        [1, 0, 0],
      ],
    ],
    [
      [0, 101, 0],
      [
        [0, 100, 0],
        [0, 1, 0],
      ],
    ],
    [
      [0, 0, 201],
      [
        [0, 0, 100],
        [0, 0, 100],
        [0, 0, 1],
      ],
    ],
    [
      [950, 100, 100],
      [
        [800, 100, 100],
        [150, 0, 0],
      ],
    ],
  ])('%j entries go up as %j', ([m, p, t], expected) => {
    const chunks = chunkLogBatch({
      metrics: points(m!),
      params: pairs('p', p!),
      tags: pairs('t', t!),
    });
    expect(chunks.map((c) => [c.metrics.length, c.params.length, c.tags.length])).toEqual(expected);
  });

  it('never exceeds a limit and keeps every entry once, in order', () => {
    const batch = { metrics: points(3333), params: pairs('p', 345), tags: pairs('t', 123) };
    const chunks = chunkLogBatch(batch);
    const { metrics, params, tags, total } = LOG_BATCH_LIMITS;
    const over = chunks.filter(
      (c) =>
        c.metrics.length > metrics ||
        c.params.length > params ||
        c.tags.length > tags ||
        c.metrics.length + c.params.length + c.tags.length > total,
    );
    expect(over).toEqual([]);
    expect({
      metrics: chunks.flatMap((c) => c.metrics),
      params: chunks.flatMap((c) => c.params),
      tags: chunks.flatMap((c) => c.tags),
    }).toEqual(batch);
    // 3333 + 345 + 123 = 3801 entries need at least 4 requests; this split uses exactly 4
    expect(chunks).toHaveLength(4);
  });
});

describe('checkEntries', () => {
  const refused = (f: () => void) => {
    try {
      f();
    } catch (e) {
      return e as MlflowError;
    }
    throw new Error('not refused');
  };

  it('accepts values exactly at the limits', () => {
    expect(() =>
      checkEntries('param', [{ key: 'k'.repeat(250), value: 'v'.repeat(6000) }]),
    ).not.toThrow();
    expect(() => checkEntries('tag', [{ key: 't', value: 'v'.repeat(8000) }])).not.toThrow();
  });

  it("refuses one character more, naming the key, with MLflow's INVALID_PARAMETER_VALUE", () => {
    const e = refused(() =>
      checkEntries('param', [
        { key: 'fine', value: 'x' },
        { key: 'optim.schedule', value: 'v'.repeat(6001) },
      ]),
    );
    expect(e).toBeInstanceOf(MlflowError);
    expect(e.code).toBe('MLFLOW_INVALID_INPUT');
    expect(e.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(e.detail).toBe(
      "param 'optim.schedule': value has 6001 characters; the server allows 6000",
    );
    expect(
      refused(() => checkEntries('tag', [{ key: 'note', value: 'v'.repeat(8001) }])).detail,
    ).toContain("tag 'note'");
    const long = refused(() => checkEntries('metric', [{ key: 'm'.repeat(251) }]));
    expect(long.detail).toMatch(
      /^metric key 'm{60}\.\.\.' has 251 characters; the server allows 250$/,
    );
  });
});

describe('URIs and credentials', () => {
  it('keeps a path prefix, drops the trailing slash and moves URI credentials to auth', () => {
    expect(parseTrackingUri('https://u:p%2Fq@mlflow.example.com/prefix/')).toEqual({
      base: 'https://mlflow.example.com/prefix',
      auth: { username: 'u', password: 'p/q' },
    });
  });

  it('refuses what it cannot talk to, with distinct codes', () => {
    const code = (uri: string) => {
      try {
        parseTrackingUri(uri);
      } catch (e) {
        return (e as MlflowError).code;
      }
    };
    expect(code('databricks')).toBe('MLFLOW_BAD_URI');
    expect(code('sqlite:///mlflow.db')).toBe('MLFLOW_UNSUPPORTED_SCHEME');
    expect(code('file:///tmp/mlruns')).toBe('MLFLOW_UNSUPPORTED_SCHEME');
  });

  it('reads the standard variables, ignoring empty ones', () => {
    const env = {
      MLFLOW_TRACKING_TOKEN: '',
      MLFLOW_TRACKING_USERNAME: 'u',
      MLFLOW_TRACKING_PASSWORD: 'p',
    };
    expect(authFromEnv(env as NodeJS.ProcessEnv)).toEqual({ username: 'u', password: 'p' });
    expect(authFromEnv({} as NodeJS.ProcessEnv)).toEqual({});
  });

  it('maps run and logged-model artifact URIs to proxy paths', () => {
    expect(artifactProxyPath('mlflow-artifacts:/1/models/m-abc/artifacts')).toBe(
      '1/models/m-abc/artifacts',
    );
    expect(artifactProxyPath('mlflow-artifacts://srv:5000/2/r1/artifacts/')).toBe('2/r1/artifacts');
    expect(() => artifactProxyPath('s3://bucket/2/r1/artifacts')).toThrow(/does not proxy/);
  });
});
