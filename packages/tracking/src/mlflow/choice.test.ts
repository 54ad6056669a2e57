import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chooseTrackingUri, recordedTracking, type RecordedTracking } from './choice.js';

const A = 'http://127.0.0.1:5001';
const B = 'http://127.0.0.1:5002';
const folder = (configUri: string, stateUri?: string): RecordedTracking => ({
  path: '/runs/r',
  configUri,
  ...(stateUri ? { stateUri } : {}),
});

describe('chooseTrackingUri', () => {
  it('a new run: tracking.uri, else MLFLOW_TRACKING_URI, else none; nothing printed', () => {
    expect(chooseTrackingUri({ configUri: A, envUri: B })).toEqual({ uri: A });
    expect(chooseTrackingUri({ configUri: '', envUri: B })).toEqual({ uri: B });
    expect(chooseTrackingUri({ configUri: '' })).toEqual({ uri: '' });
  });

  it("'off' turns tracking off whatever the variable says, and says so", () => {
    const fresh = chooseTrackingUri({ configUri: 'off', envUri: B });
    expect(fresh.uri).toBe('');
    expect(fresh.message).toMatch(/^MLflow tracking off \(tracking.uri=off\)/);
    const resumed = chooseTrackingUri({ configUri: 'off', envUri: A, recorded: folder('', A) });
    expect(resumed.uri).toBe('');
    expect(resumed.message).toContain(`its MLflow run on ${A} is left as it is`);
    expect(resumed.message).toContain('contrast sync /runs/r');
  });

  it('a resumed run continues on the server its mlflow.json records, with or without the variable', () => {
    for (const envUri of [undefined, '', A]) {
      const c = chooseTrackingUri({ configUri: '', envUri, recorded: folder('', A) });
      expect(c).toEqual({
        uri: A,
        message: `tracking continues on ${A} (recorded in the run folder).`,
      });
    }
  });

  it('the variable set to another server does not move a resumed run; the message says how to', () => {
    const c = chooseTrackingUri({ configUri: '', envUri: `${B}/`, recorded: folder('', A) });
    expect(c.uri).toBe(A);
    expect(c.message).toContain(`MLFLOW_TRACKING_URI=${B} is not used for a resumed run`);
    expect(c.message).toContain(`--set tracking.uri=${B}`);
  });

  it("config.yaml's tracking.uri is the record when there is no mlflow.json", () => {
    expect(chooseTrackingUri({ configUri: A, recorded: folder(A) }).uri).toBe(A);
  });

  it('mlflow.json wins over config.yaml (a run moved to another server stays there)', () => {
    expect(chooseTrackingUri({ configUri: A, recorded: folder(A, B) }).uri).toBe(B);
  });

  it('an explicit tracking.uri that differs from the run config wins over the folder and the variable', () => {
    const c = chooseTrackingUri({ configUri: B, envUri: A, recorded: folder('', A) });
    expect(c.uri).toBe(B);
    expect(c.message).toBe(
      `tracking.uri=${B} given: overrides the run folder's ${A}: a new MLflow run there gets the whole run folder`,
    );
  });

  it('an untracked run stays untracked unless tracking.uri is given', () => {
    const ambient = chooseTrackingUri({ configUri: '', envUri: A, recorded: folder('') });
    expect(ambient.uri).toBe('');
    expect(ambient.message).toContain('this run was not tracked in MLflow');
    expect(chooseTrackingUri({ configUri: '', recorded: folder('') })).toEqual({ uri: '' });
    const explicit = chooseTrackingUri({ configUri: A, recorded: folder('') });
    expect(explicit.uri).toBe(A);
    expect(explicit.message).toContain('untracked so far, is tracked from now on');
  });

  it('never prints credentials written into a URI', () => {
    const c = chooseTrackingUri({
      configUri: 'http://admin:s3cret@127.0.0.1:5003',
      recorded: folder('', A),
    });
    expect(c.message).toContain('http://127.0.0.1:5003');
    expect(c.message).not.toContain('s3cret');
  });
});

describe('recordedTracking', () => {
  it("reads config.yaml's tracking.uri and mlflow.json's server", () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-choice-'));
    expect(recordedTracking(dir)).toEqual({ path: dir, configUri: '' });
    writeFileSync(join(dir, 'config.yaml'), `name: x\ntracking:\n  uri: ${A}\n`);
    writeFileSync(join(dir, 'mlflow.json'), JSON.stringify({ version: 1, uri: B }));
    expect(recordedTracking(dir)).toEqual({ path: dir, configUri: A, stateUri: B });
  });
});
