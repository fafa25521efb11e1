import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, HeraldError } from '@herald/protocol';
import { FakeClock } from '@herald/testkit';
import fc from 'fast-check';
import {
  ADMISSION_REASONS,
  Admission,
  type AdmissionDecision,
  type AdmissionOptions,
  type AdmissionReason,
  type AdmissionRefusal,
  type AdmissionTicket,
  admissionError,
  jitterSeconds,
} from '../../src/admission/index.ts';
import { defaultConfig, parseConfig } from '../../src/config.ts';
import { admissionOptionsOf } from '../../src/edge.ts';

/** Admission with the config's default limits, and `options` over them. */
const admission = (options: Partial<AdmissionOptions>) =>
  new Admission({ ...admissionOptionsOf(defaultConfig()), ...options });

function admitted(d: AdmissionDecision): AdmissionTicket {
  assert.ok(d.ok, `expected admission, got ${d.ok ? '' : d.reason}`);
  return d.ticket;
}

function refused(d: AdmissionDecision): AdmissionRefusal {
  assert.ok(!d.ok, 'expected a refusal');
  return d;
}

const a = (ip: string, subject?: string) => ({ ip, subject });

describe('admission', () => {
  it('admits within every limit; open and perIp track held streams', () => {
    const adm = admission({ maxConnections: 10, maxPerIp: 5, maxPerSubject: 5 });
    const t1 = admitted(adm.admit(a('10.0.0.1', 'alice')));
    const t2 = admitted(adm.admit(a('10.0.0.2')));
    assert.equal(adm.open, 2);
    assert.equal(adm.perIp, 2);
    assert.equal(adm.perSubject, 1);
    t1.release();
    t2.release();
    assert.equal(adm.open, 0);
    assert.equal(adm.perIp, 0, 'an address whose count reaches zero is dropped');
    assert.equal(adm.perSubject, 0);
  });

  it('connection cap answers 503 HERALD_OVERLOADED with a jittered Retry-After', () => {
    let r = 0;
    const adm = admission({ maxConnections: 2, retryAfterSeconds: 5, random: () => r });
    admitted(adm.admit(a('1.1.1.1')));
    admitted(adm.admit(a('2.2.2.2')));
    const refusal = refused(adm.admit(a('3.3.3.3')));
    assert.deepEqual(refusal, {
      ok: false,
      reason: 'pod-full',
      code: 'HERALD_OVERLOADED',
      status: 503,
      detail: 'this gateway holds its limit of 2 streams; retry later',
      limit: 2,
      retryAfterSeconds: 5,
    });
    assert.equal(refusal.status, ErrorCodes.HERALD_OVERLOADED.status);
    r = 0.5;
    assert.equal(refused(adm.admit(a('3.3.3.3'))).retryAfterSeconds, 8);
    r = 0.999_999;
    assert.equal(refused(adm.admit(a('3.3.3.3'))).retryAfterSeconds, 10);
  });

  it('jitter - Retry-After is a whole number spread over [base, 2·base], even if random returns 1', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3600 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (base, r) => {
          const s = jitterSeconds(base, () => r);
          assert.ok(Number.isInteger(s) && s >= base && s <= 2 * base, `${s} for base ${base}`);
        },
      ),
    );
    const seen = new Set<number>();
    for (let i = 0; i <= 10; i++) seen.add(jitterSeconds(2, () => i / 10.5));
    assert.deepEqual([...seen].sort(), [2, 3, 4], 'every second of the window is reachable');
  });

  it('per-IP cap answers 429 HERALD_RATE_LIMITED (reason ip-full); other addresses still get in', () => {
    const adm = admission({ maxPerIp: 2, retryAfterSeconds: 5, random: () => 0 });
    const t = admitted(adm.admit(a('10.0.0.1')));
    admitted(adm.admit(a('10.0.0.1')));
    const refusal = refused(adm.admit(a('10.0.0.1')));
    assert.equal(refusal.reason, 'ip-full');
    assert.equal(refusal.code, 'HERALD_RATE_LIMITED');
    assert.equal(refusal.status, 429);
    assert.equal(refusal.limit, 2);
    assert.equal(refusal.retryAfterSeconds, 5);
    assert.doesNotMatch(refusal.detail, /10\.0\.0\.1/, 'the detail does not echo the address');
    admitted(adm.admit(a('10.0.0.2')));
    t.release();
    admitted(adm.admit(a('10.0.0.1')));
    assert.equal(adm.openForIp('10.0.0.1'), 2);
  });

  it('per-subject cap counts a user across addresses; anonymous streams are not subject-capped', () => {
    const adm = admission({ maxPerSubject: 1 });
    admitted(adm.admit(a('10.0.0.1', 'alice')));
    const refusal = refused(adm.admit(a('10.0.0.2', 'alice')));
    assert.equal(refusal.reason, 'subject-full');
    assert.equal(refusal.code, 'HERALD_RATE_LIMITED');
    assert.equal(refusal.status, 429);
    assert.doesNotMatch(refusal.detail, /alice/);
    admitted(adm.admit(a('10.0.0.2', 'bob')));
    admitted(adm.admit(a('10.0.0.2')));
    admitted(adm.admit(a('10.0.0.2')));
    assert.equal(adm.openForSubject('alice'), 1);
    assert.equal(adm.perSubject, 2);
  });

  it('connect rate - a reconnect storm gets a burst through; the rest get 429 with a Retry-After no earlier than the next token', () => {
    const clock = new FakeClock();
    const adm = admission({
      connectRate: 0.1,
      connectBurst: 3,
      retryAfterSeconds: 1,
      clock,
      random: () => 0,
    });
    for (let i = 0; i < 3; i++) admitted(adm.admit(a(`10.0.0.${i}`)));
    const refusal = refused(adm.admit(a('10.0.0.9')));
    assert.equal(refusal.reason, 'rate');
    assert.equal(refusal.code, 'HERALD_RATE_LIMITED');
    assert.equal(refusal.status, 429);
    assert.equal(refusal.retryAfterSeconds, 10, 'one token per 10 s outweighs the 1 s jitter base');
    clock.tick(9_999);
    refused(adm.admit(a('10.0.0.9')));
    clock.tick(1);
    admitted(adm.admit(a('10.0.0.9')));
  });

  it('connect rate - the jitter still spreads refusals when the next token is due sooner', () => {
    const adm = admission({
      connectRate: 100,
      connectBurst: 1,
      retryAfterSeconds: 5,
      random: () => 0.99,
    });
    admitted(adm.admit(a('1.1.1.1')));
    assert.equal(refused(adm.admit(a('1.1.1.1'))).retryAfterSeconds, 10);
  });

  it('a refusal for a cap does not burn a rate token (caps are checked first)', () => {
    const clock = new FakeClock();
    const adm = admission({ connectRate: 1, connectBurst: 2, maxPerIp: 1, maxConnections: 3, clock });
    admitted(adm.admit(a('10.0.0.1')));
    for (let i = 0; i < 5; i++) assert.equal(refused(adm.admit(a('10.0.0.1'))).reason, 'ip-full');
    admitted(adm.admit(a('10.0.0.2')));
    assert.equal(refused(adm.admit(a('10.0.0.3'))).reason, 'rate');
  });

  it('checks run in order: pod cap, address cap, subject cap, rate', () => {
    const clock = new FakeClock();
    const adm = admission({
      maxConnections: 1,
      maxPerIp: 1,
      maxPerSubject: 1,
      connectRate: 1,
      connectBurst: 1,
      clock,
    });
    admitted(adm.admit(a('10.0.0.1', 'alice')));
    assert.equal(refused(adm.admit(a('10.0.0.1', 'alice'))).reason, 'pod-full');
    const wider = admission({ maxPerIp: 1, maxPerSubject: 1, connectRate: 1, connectBurst: 1, clock });
    admitted(wider.admit(a('10.0.0.1', 'alice')));
    assert.equal(refused(wider.admit(a('10.0.0.1', 'alice'))).reason, 'ip-full');
    assert.equal(refused(wider.admit(a('10.0.0.2', 'alice'))).reason, 'subject-full');
    assert.equal(refused(wider.admit(a('10.0.0.2', 'bob'))).reason, 'rate');
  });

  it('ticket.release() is idempotent: a second call does not double-free', () => {
    const adm = admission({ maxConnections: 2, maxPerIp: 2, maxPerSubject: 2 });
    const t1 = admitted(adm.admit(a('10.0.0.1', 'alice')));
    const t2 = admitted(adm.admit(a('10.0.0.1', 'alice')));
    assert.equal(t1.released, false);
    t1.release();
    t1.release();
    assert.equal(t1.released, true);
    assert.equal(adm.open, 1);
    assert.equal(adm.openForIp('10.0.0.1'), 1);
    assert.equal(adm.openForSubject('alice'), 1);
    admitted(adm.admit(a('10.0.0.1', 'alice')));
    assert.equal(refused(adm.admit(a('10.0.0.3'))).reason, 'pod-full', 'the double release freed nothing');
    t2.release();
    assert.equal(adm.open, 1);
  });

  it('counts every refusal by reason, as a frozen snapshot', () => {
    const adm = admission({ maxConnections: 1 });
    assert.deepEqual(adm.counts(), { 'pod-full': 0, rate: 0, 'ip-full': 0, 'subject-full': 0 });
    admitted(adm.admit(a('1.1.1.1')));
    refused(adm.admit(a('1.1.1.1')));
    refused(adm.admit(a('1.1.1.1')));
    const counts = adm.counts();
    assert.deepEqual(counts, { 'pod-full': 2, rate: 0, 'ip-full': 0, 'subject-full': 0 });
    assert.ok(Object.isFrozen(counts));
    refused(adm.admit(a('1.1.1.1')));
    assert.equal(counts['pod-full'], 2, 'a snapshot does not move');
    assert.deepEqual(Object.keys(counts), [...ADMISSION_REASONS]);
  });

  it('admissionError turns a refusal into the problem error, with limit and retryAfter', () => {
    const adm = admission({ maxConnections: 1, retryAfterSeconds: 5, random: () => 0 });
    admitted(adm.admit(a('1.1.1.1')));
    const err = admissionError(refused(adm.admit(a('1.1.1.1'))));
    assert.ok(err instanceof HeraldError);
    assert.equal(err.code, 'HERALD_OVERLOADED');
    assert.equal(err.status, 503);
    assert.deepEqual(err.extra, { limit: 1, retryAfter: 5 });
  });

  it('admissionOptionsOf takes each limit from its HERALD_ variable', () => {
    assert.deepEqual(
      admissionOptionsOf(
        parseConfig({
          HERALD_MAX_CONNECTIONS: '7',
          HERALD_MAX_CONNECTIONS_PER_IP: '3',
          HERALD_MAX_CONNECTIONS_PER_SUBJECT: '2',
          HERALD_CONNECT_RATE: '5',
          HERALD_CONNECT_BURST: '9',
          HERALD_RETRY_MS: '2500',
        }),
      ),
      {
        maxConnections: 7,
        maxPerIp: 3,
        maxPerSubject: 2,
        connectRate: 5,
        connectBurst: 9,
        retryAfterSeconds: 3,
      },
    );
    const burst = (env: Record<string, string>) => admissionOptionsOf(parseConfig(env)).connectBurst;
    assert.equal(burst({ HERALD_CONNECT_RATE: '5' }), 5, "HERALD_CONNECT_BURST 0 is one second's worth");
    assert.equal(burst({}), 1, 'at least 1, also without a rate');
  });

  it('for any admit/release sequence: open = admitted − released, caps hold, maps hold no zero entries', () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('admit' as const),
        ip: fc.integer({ min: 0, max: 3 }),
        subject: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      }),
      fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(
        fc.record({
          maxConnections: fc.integer({ min: 0, max: 6 }),
          maxPerIp: fc.integer({ min: 0, max: 3 }),
          maxPerSubject: fc.integer({ min: 0, max: 3 }),
        }),
        fc.array(op, { maxLength: 120 }),
        (limits, ops) => {
          const adm = admission({ ...limits, random: () => 0 });
          const tickets: AdmissionTicket[] = [];
          const perIp = new Map<string, number>();
          const perSubject = new Map<string, number>();
          const counts = Object.fromEntries(ADMISSION_REASONS.map((r) => [r, 0])) as Record<
            AdmissionReason,
            number
          >;
          let nAdmitted = 0;
          let nReleased = 0;
          const holders = new Map<AdmissionTicket, { ip: string; subject: string | undefined }>();
          const bump = (m: Map<string, number>, k: string, by: number) => {
            const n = (m.get(k) ?? 0) + by;
            if (n === 0) m.delete(k);
            else m.set(k, n);
          };
          for (const o of ops) {
            if (o.kind === 'admit') {
              const ip = `ip${o.ip}`;
              const subject = o.subject === undefined ? undefined : `sub${o.subject}`;
              const within = (cap: number, n: number) => cap === 0 || n < cap;
              const expected: AdmissionReason | undefined = !within(
                limits.maxConnections,
                nAdmitted - nReleased,
              )
                ? 'pod-full'
                : !within(limits.maxPerIp, perIp.get(ip) ?? 0)
                  ? 'ip-full'
                  : subject !== undefined && !within(limits.maxPerSubject, perSubject.get(subject) ?? 0)
                    ? 'subject-full'
                    : undefined;
              const d = adm.admit({ ip, subject });
              assert.equal(d.ok ? undefined : d.reason, expected);
              if (d.ok) {
                nAdmitted++;
                tickets.push(d.ticket);
                holders.set(d.ticket, { ip, subject });
                bump(perIp, ip, 1);
                if (subject !== undefined) bump(perSubject, subject, 1);
              } else counts[d.reason]++;
            } else if (tickets.length > 0) {
              const t = tickets[o.pick % tickets.length]!;
              if (!t.released) {
                nReleased++;
                const h = holders.get(t)!;
                bump(perIp, h.ip, -1);
                if (h.subject !== undefined) bump(perSubject, h.subject, -1);
              }
              t.release();
            }
            assert.equal(adm.open, nAdmitted - nReleased);
            if (limits.maxConnections > 0) assert.ok(adm.open <= limits.maxConnections);
            assert.equal(adm.perIp, perIp.size, 'no address is kept at zero');
            assert.equal(adm.perSubject, perSubject.size, 'no subject is kept at zero');
            for (const [ip, n] of perIp) {
              assert.equal(adm.openForIp(ip), n);
              if (limits.maxPerIp > 0) assert.ok(n <= limits.maxPerIp);
            }
            for (const [s, n] of perSubject) {
              assert.equal(adm.openForSubject(s), n);
              if (limits.maxPerSubject > 0) assert.ok(n <= limits.maxPerSubject);
            }
            assert.deepEqual(adm.counts(), counts);
          }
        },
      ),
    );
  });
});
