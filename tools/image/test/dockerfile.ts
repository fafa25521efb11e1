/**
 * Just enough of a Dockerfile parser to compare services/gateway/Dockerfile with the image the
 * builder writes: instructions (continuation lines joined, comments dropped) grouped by stage.
 */

export interface Instruction {
  /** Upper-case, e.g. `COPY`. */
  readonly op: string;
  /** The rest of the line, continuations joined with a space. */
  readonly rest: string;
}

export interface Stage {
  /** The `AS` name, or the image of a stage without one. */
  readonly name: string;
  readonly instructions: readonly Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const stages: { name: string; instructions: Instruction[] }[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    // Comment lines, also between continuation lines, as Docker reads them.
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = `${pending}${line}`.trim();
    pending = '';
    if (full === '') continue;
    const m = /^(\S+)\s*(.*)$/.exec(full)!;
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.replace(/\s+/g, ' ');
    if (op === 'FROM') {
      const as = /\bAS\s+(\S+)$/i.exec(rest);
      stages.push({ name: as ? as[1]! : rest, instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`Dockerfile has ${op} before any FROM`);
    stage.instructions.push({ op, rest });
  }
  return stages;
}

/** What a stage sets for the container that runs it. */
export interface RunSettings {
  readonly user?: string;
  readonly workdir?: string;
  readonly env: Record<string, string>;
  readonly expose: string[];
  readonly entrypoint?: string[];
  readonly cmd?: string[];
}

export function runSettings(stage: Stage): RunSettings {
  let user: string | undefined;
  let workdir: string | undefined;
  let entrypoint: string[] | undefined;
  let cmd: string[] | undefined;
  const env: Record<string, string> = {};
  const expose: string[] = [];
  for (const { op, rest } of stage.instructions) {
    if (op === 'USER') user = rest;
    else if (op === 'WORKDIR') workdir = rest.startsWith('/') ? rest : `${workdir ?? ''}/${rest}`;
    else if (op === 'EXPOSE') expose.push(...rest.split(' ').map((p) => (p.includes('/') ? p : `${p}/tcp`)));
    else if (op === 'ENTRYPOINT') entrypoint = execForm(op, rest);
    else if (op === 'CMD') cmd = execForm(op, rest);
    else if (op === 'ENV') {
      for (const pair of rest.split(' ')) {
        const eq = pair.indexOf('=');
        if (eq < 1) throw new Error(`ENV ${rest}: only the KEY=value form is understood here`);
        env[pair.slice(0, eq)] = pair.slice(eq + 1).replace(/^"(.*)"$/, '$1');
      }
    }
  }
  return {
    ...(user === undefined ? {} : { user }),
    ...(workdir === undefined ? {} : { workdir }),
    env,
    expose,
    ...(entrypoint === undefined ? {} : { entrypoint }),
    ...(cmd === undefined ? {} : { cmd }),
  };
}

function execForm(op: string, rest: string): string[] {
  try {
    const parsed = JSON.parse(rest);
    if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) return parsed;
  } catch {}
  throw new Error(`${op} ${rest}: only the exec (JSON array) form is understood here`);
}

/** A COPY: its sources and its destination, and the stage it copies from (`--from`). */
export interface Copy {
  readonly from?: string;
  readonly sources: string[];
  readonly dest: string;
}

export function copies(stage: Stage): Copy[] {
  const out: Copy[] = [];
  for (const { op, rest } of stage.instructions) {
    if (op !== 'COPY') continue;
    const words = rest.split(' ');
    let from: string | undefined;
    while (words[0]?.startsWith('--')) {
      const flag = words.shift()!;
      if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
      else
        throw new Error(
          `COPY ${rest}: flag ${flag} is not understood here (does the image builder handle it?)`,
        );
    }
    const dest = words.pop()!;
    out.push({ ...(from === undefined ? {} : { from }), sources: words, dest });
  }
  return out;
}
