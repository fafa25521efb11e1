import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { readLines } from '../src/log-lines.ts';
import { ProcessError, type Supervised, startProcess, waitWhileRunning } from '../src/process.ts';

const ABANDON = fileURLToPath(new URL('./fixtures/abandon.ts', import.meta.url));

/** A supervised `node -e <script>`. */
function node(name: string, script: string, more: { complaints?: RegExp } = {}): Supervised {
  return startProcess({ name, program: process.execPath, args: ['-e', script], ...more });
}

/** True while `pid` is a live process: a zombie (exited, not yet reaped by its new parent) is dead. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Polls `condition` (backing off 5 → 100 ms) until it holds; fails naming `what` after `ms`. */
async function eventually(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (let wait = 5; !condition(); wait = Math.min(wait * 2, 100)) {
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await sleep(wait);
  }
}

/** Runs test/fixtures/abandon.ts in `mode` and resolves with what it printed and the fixture itself. */
async function abandon(mode: 'exit' | 'hang') {
  const fixture = spawn(process.execPath, ['--conditions=herald-source', ABANDON, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(fixture, 'exit');
  const printed = new Promise<{ pid: number; dir: string }>((resolve, reject) => {
    readLines(fixture.stdout, (line) => resolve(JSON.parse(line)));
    void exited.then(([code]) => reject(new Error(`the fixture exited (${code}) before it printed`)));
  });
  return { fixture, exited, ...(await printed) };
}

describe('process', () => {
  it('process - ready by a log line: resolves with the match, and stop() ends it with SIGTERM', async () => {
    const p = node(
      'greeter',
      "console.error('starting'); console.log('listening on 4711'); setInterval(() => {}, 60_000);",
    );
    assert.ok(p.running);
    assert.equal(typeof p.pid, 'number');
    const m = await p.waitForLine(/listening on (\d+)/, { within: 10_000 });
    assert.equal(m[1], '4711');
    // Lines seen before the wait began count too.
    assert.equal((await p.waitForLine(/^starting$/, { within: 10_000 }))[0], 'starting');
    const exit = await p.stop();
    assert.deepEqual(exit, { code: null, signal: 'SIGTERM' });
    assert.equal(p.running, false);
    assert.equal(alive(p.pid!), false);
    assert.deepEqual(await p.stop(), exit, 'stop() again changes nothing');
    // Its lines and the supervisor's notes, in one log (the exit may be seen before the last lines).
    assert.match(p.log.text(), /^# herald-testkit: started \S+ -e .* \(pid \d+\)$/m);
    assert.match(p.log.text(), /^listening on 4711$/m);
    assert.match(p.log.text(), /^# herald-testkit: pid \d+ exited \(SIGTERM\)$/m);
  });

  it('process - ready by a check: polled until it passes, what it said and what it threw are not fatal', async (t) => {
    const p = node(
      'server',
      "const s = require('node:http').createServer((q, r) => r.end('ok')); s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));",
    );
    t.after(() => p.stop());
    const [, port] = await p.waitForLine(/^port (\d+)$/, { within: 10_000 });
    let calls = 0;
    await p.waitUntil(
      async () => {
        calls++;
        if (calls === 1) return 'not asked yet';
        if (calls === 2) throw new Error('connection refused, say');
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return (await res.text()) === 'ok';
      },
      { within: 10_000, what: 'GET /' },
    );
    assert.equal(calls, 3);
  });

  it('process - a timeout names the program, what it waited for, the last problem, its complaints and the tail of its output', async (t) => {
    const p = node(
      'sleepy',
      "console.error('sleepy: fatal-ish: no config'); for (let i = 0; i < 100; i++) console.log('usage line ' + i); setInterval(() => {}, 60_000);",
      { complaints: /^sleepy: / },
    );
    t.after(() => p.stop());
    await p.waitForLine(/usage line 99/, { within: 10_000 });
    const err = await p
      .waitUntil(() => 'the moon is not up', { within: 200, what: 'GET /moon' })
      .then(
        () => assert.fail('resolved'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof ProcessError);
    assert.equal(err.exit, undefined, 'it still runs');
    assert.match(
      err.message,
      /^sleepy was not ready within 200 ms \(GET \/moon: the moon is not up\)\. Last log lines:\nsleepy: fatal-ish: no config\n…\nusage line 60\n[\s\S]*usage line 99$/,
    );
    assert.equal(p.running, true, 'a timeout does not stop it: the caller decides');

    const line = await p.waitForLine(/never/, { within: 50 }).then(
      () => assert.fail('resolved'),
      (e: unknown) => e as Error,
    );
    assert.match(
      line.message,
      /^sleepy was not ready within 50 ms \(no line matching \/never\/ in its output\)\./,
    );
  });

  it('process - an early exit ends the wait at once with its exit code and last words, whatever the bound', async () => {
    const p = node(
      'quitter',
      "console.log('hello'); console.error('quitter: cannot open store'); process.exit(3);",
    );
    const started = Date.now();
    await assert.rejects(
      p.waitUntil(() => false, { within: 60_000, what: 'anything' }),
      (err: unknown) =>
        err instanceof ProcessError &&
        err.exit?.code === 3 &&
        /^quitter exited \(code 3\) before it was ready\. Last log lines:\n[\s\S]*quitter: cannot open store/.test(
          err.message,
        ),
    );
    assert.ok(Date.now() - started < 30_000, 'not after the bound');
    await assert.rejects(
      p.waitForLine(/^ready$/, { within: 60_000, during: 'while starting' }),
      /^ProcessError: quitter exited \(code 3\) while starting\./,
    );
  });

  it('process - a port taken: the error says so and marks it for a retry on fresh ports', async () => {
    const p = node(
      'binder',
      "console.error('listen tcp 127.0.0.1:4222: bind: address already in use'); process.exit(1);",
    );
    await assert.rejects(p.waitForLine(/^ready$/, { within: 10_000 }), (err: unknown) => {
      assert.ok(err instanceof ProcessError);
      assert.equal(err.addressInUse, true);
      assert.match(
        err.message,
        /^binder exited \(code 1\) before it was ready; a port it was given is taken by another process\./,
      );
      return true;
    });
  });

  it('process - a program that cannot be started: every wait says so and what to do', async () => {
    const p = startProcess({ program: '/nonexistent/herald-tool', fix: 'run `bash tools/herald-tool.sh`' });
    assert.equal(p.pid, undefined);
    assert.equal(p.running, false);
    await assert.rejects(
      p.waitUntil(() => true, { within: 10_000, what: 'anything' }),
      /^ProcessError: herald-tool could not be started \(spawn \/nonexistent\/herald-tool ENOENT\) before it was ready; run `bash tools\/herald-tool\.sh`\./,
    );
    const exit = await p.stop();
    assert.equal(exit.code, null);
    assert.match(String(exit.error), /ENOENT/);
  });

  it('process - the exit of a process it needs ends the wait with that one’s error', async (t) => {
    const main = node('apiserver', 'setInterval(() => {}, 60_000);');
    t.after(() => main.stop());
    const dep = node('store', "console.error('store: disk full'); process.exit(2);");
    await assert.rejects(
      main.waitUntil(() => 'no store', { within: 60_000, what: 'GET /readyz', alsoWatch: [dep] }),
      /^ProcessError: store exited \(code 2\) before it was ready\. Last log lines:\n[\s\S]*store: disk full/,
    );
    await assert.rejects(
      waitWhileRunning(() => false, { within: 60_000, what: 'the cluster', watch: [main, dep] }),
      /^ProcessError: store exited \(code 2\) while waiting for the cluster\./,
    );
    await assert.rejects(
      waitWhileRunning(() => 'two of three nodes', { within: 50, what: 'the cluster', watch: [main] }),
      /^ProcessError: the cluster: not ready within 50 ms \(two of three nodes\)$/,
    );
  });

  it('process - stop() escalates to SIGKILL when SIGTERM is ignored; kill() reports a process that does not die', async () => {
    const p = node(
      'stubborn',
      "process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); setInterval(() => {}, 60_000);",
    );
    // The handler is in place once it says ready.
    await p.waitForLine(/^ready$/, { within: 10_000 });
    await assert.rejects(
      p.kill('SIGTERM', 100),
      /^ProcessError: stubborn \(pid \d+\) still runs 100 ms after SIGTERM; use stop\(\), which follows SIGTERM with SIGKILL$/,
    );
    assert.equal(p.running, true);
    await p.waitForLine(/^ignoring SIGTERM$/, { within: 10_000 });
    const exit = await p.stop(200);
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    assert.equal(alive(p.pid!), false);
    assert.match(p.log.text(), /# herald-testkit: no exit 200 ms after SIGTERM; sending SIGKILL/);
  });

  it('process - kill() sends the signal and resolves once it has exited', async () => {
    const p = node('crasher', "console.log('ready'); setInterval(() => {}, 60_000);");
    await p.waitForLine(/^ready$/, { within: 10_000 });
    assert.deepEqual(await p.kill(), { code: null, signal: 'SIGKILL' });
    assert.equal(p.running, false);
  });

  it('process - a test process that ends without stopping its child: the exit hook kills it and removes its directory', async () => {
    const { pid, dir, exited } = await abandon('exit');
    const [code] = await exited;
    assert.equal(code, 0, 'the fixture ended on its own: the supervised child did not hold it open');
    await eventually(() => !alive(pid), `the abandoned child ${pid} is gone`);
    await eventually(() => !existsSync(dir), `${dir} is removed`);
  });

  it('process - a test process that is SIGKILLed: the watcher kills its child (which ignores SIGTERM) and removes its directory', async () => {
    const { pid, dir, fixture, exited } = await abandon('hang');
    assert.ok(alive(pid), 'the child runs while the fixture does');
    assert.ok(existsSync(dir));
    fixture.kill('SIGKILL');
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    await eventually(() => !alive(pid), `the abandoned child ${pid} is gone`);
    await eventually(() => !existsSync(dir), `${dir} is removed`);
  });
});
