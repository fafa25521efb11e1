/**
 * `make image-test`, after `make image`: the tarballs in .images/ are well-formed and
 * reproducible, the gateway image is what services/gateway/Dockerfile describes, and each image
 * really runs from its own files (extracted and chrooted, as uid 1000 on a read-only root).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, posix } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, removeTempDir } from '@herald/testkit';
import { parse } from 'yaml';
import { buildImages } from '../build.ts';
import { MANIFESTS, REPO } from '../images.ts';
import { builtImages, OUT } from './built.ts';
import { copies, parseDockerfile, runSettings } from './dockerfile.ts';
import { fileContent, type OpenedImage, openImage } from './read-image.ts';
import { type Container, extractRootfs, requireRoot, runContainer } from './run-image.ts';

const NAMES = ['gateway', 'nats-server', 'pause'] as const;

const index = builtImages();
const opened = new Map<string, OpenedImage>();
function image(name: string): OpenedImage {
  let img = opened.get(name);
  if (img === undefined) {
    img = openImage(join(OUT, index[name]!.file));
    opened.set(name, img);
  }
  return img;
}

/** Every path of the image's merged tree, with the entry and the layer it comes from (upper layers win). */
function tree(
  img: OpenedImage,
): Map<string, { layer: number; entry: OpenedImage['layers'][number][number] }> {
  const out = new Map();
  img.layers.forEach((entries, layer) => {
    for (const entry of entries) out.set(entry.path, { layer, entry });
  });
  return out;
}

describe('archive', () => {
  for (const name of NAMES) {
    test(`archive - ${name}: manifest.json, index.json, config and layer digests all match their content`, () => {
      const img = image(name);
      const built = index[name]!;
      assert.deepEqual(img.repoTags, [built.ref], 'manifest.json RepoTags');
      assert.equal(img.indexName, built.ref, "index.json's io.containerd.image.name");
      assert.equal(img.configDigest, built.config.digest, 'config digest in images.json');
      assert.equal(img.manifestDigest, built.manifest.digest, 'manifest digest in images.json');
      assert.deepEqual(
        img.layerDigests,
        built.layers.map((l) => l.digest),
        'layer digests in images.json',
      );
      assert.deepEqual(img.unreferencedBlobs, [], 'blobs nothing references');
      assert.deepEqual(img.oddEntries, [], 'outer entries not root-owned, 0644/0755, at the build time');
      assert.equal(img.config.os, 'linux');
    });

    test(`archive - ${name}: layers are sorted, each directory before its content, one mtime, no duplicates`, () => {
      const img = image(name);
      const created = Date.parse(img.config.created) / 1000;
      img.layers.forEach((entries, i) => {
        const paths = entries.map((e) => e.path);
        const sorted = [...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        assert.deepEqual(paths, sorted, `layer ${i} entries in byte order`);
        assert.equal(new Set(paths).size, paths.length, `layer ${i} has duplicate paths`);
        const seen = new Set<string>();
        for (const e of entries) {
          const parent = posix.dirname(e.path);
          assert.ok(parent === '.' || seen.has(parent), `layer ${i}: ${e.path} comes before its directory`);
          seen.add(e.path);
          assert.equal(e.mtime, created, `layer ${i}: ${e.path} mtime`);
          assert.ok(
            ['0', '2', '5'].includes(e.flag),
            `layer ${i}: ${e.path} is a file, symlink or directory`,
          );
          assert.ok(
            !e.path.startsWith('/') && !e.path.split('/').includes('..'),
            `layer ${i}: ${e.path} stays inside`,
          );
        }
      });
    });
  }

  test('archive - files belong to root, except the home and data directories of uid 1000', () => {
    for (const name of NAMES) {
      for (const [path, { entry }] of tree(image(name))) {
        const expected = ['home/node', 'data'].includes(path) ? 1000 : 0;
        assert.equal(entry.uid, expected, `${name}: /${path} uid`);
        assert.equal(entry.gid, expected, `${name}: /${path} gid`);
      }
    }
  });
});

describe('gateway image and services/gateway/Dockerfile', () => {
  const stages = parseDockerfile(readFileSync(join(REPO, 'services/gateway/Dockerfile'), 'utf8'));
  const final = stages.at(-1)!;
  const settings = runSettings(final);

  test('Dockerfile - the gateway image runs as the same user, in the same directory, with the same entrypoint and ports', () => {
    const c = image('gateway').config.config;
    assert.equal(c.User, settings.user, 'USER');
    assert.equal(c.WorkingDir, settings.workdir, 'WORKDIR');
    assert.deepEqual(c.Entrypoint, settings.entrypoint, 'ENTRYPOINT');
    assert.deepEqual(c.Cmd, settings.cmd, 'CMD');
    assert.deepEqual(Object.keys(c.ExposedPorts ?? {}).sort(), [...settings.expose].sort(), 'EXPOSE');
    for (const [key, value] of Object.entries(settings.env)) {
      assert.ok(
        c.Env.includes(`${key}=${value}`),
        `ENV ${key}=${value} is missing from the image's Env ${c.Env}`,
      );
    }
  });

  test("Dockerfile - /app holds exactly what the final stage copies, and those files are the tree's", () => {
    const img = image('gateway');
    const files = tree(img);
    const workdir = settings.workdir!.replace(/^\//, '');
    const targets = copies(final).map((c) => {
      assert.equal(c.from, stages[0]!.name, `COPY ${c.sources} ${c.dest}: copies from the build stage`);
      assert.equal(c.sources.length, 1, `COPY ${c.sources} ${c.dest}: one source`);
      const source = posix.relative('/src', c.sources[0]!);
      return { source, dest: posix.join(workdir, c.dest) };
    });
    const dests = targets.map((t) => t.dest);
    const under = (p: string, d: string) => p === d || p.startsWith(`${d}/`);
    for (const path of files.keys()) {
      if (!under(path, workdir) || path === workdir) continue;
      const explained = dests.some((d) => under(path, d) || under(d, path));
      assert.ok(
        explained,
        `/${path} is in the image, but the Dockerfile copies nothing there (tools/image/images.ts)`,
      );
    }
    for (const { source, dest } of targets) {
      const at = files.get(dest);
      assert.ok(
        at,
        `the Dockerfile copies ${source} to /${dest}, which the image lacks (tools/image/images.ts)`,
      );
      if (at.entry.type === 'file') {
        assert.deepEqual(
          fileContent(img, at.layer, at.entry),
          readFileSync(join(REPO, source)),
          `/${dest} is ${source}`,
        );
      } else if (source.endsWith('/dist')) {
        // What `make build` compiled is what the image holds, file for file.
        const inImage = [...files.keys()]
          .filter((p) => p.startsWith(`${dest}/`))
          .map((p) => p.slice(dest.length + 1));
        const built = readdirSync(join(REPO, source), { recursive: true, encoding: 'utf8' });
        assert.deepEqual(inImage.sort(), built.sort(), `/${dest} is ${source}`);
      }
    }
    const top = (ps: Iterable<string>) =>
      [...new Set([...ps].filter((p) => p.startsWith(`${workdir}/`)).map((p) => p.split('/')[1]))].sort();
    assert.deepEqual(top(files.keys()), top(dests), `top-level paths under /${workdir}`);
  });

  test('Dockerfile - node_modules holds the production dependencies and none of the dev tools', () => {
    const files = tree(image('gateway'));
    const has = (pkg: string) => files.has(`app/node_modules/${pkg}/package.json`);
    const gateway = JSON.parse(readFileSync(join(REPO, 'services/gateway/package.json'), 'utf8'));
    for (const dep of Object.keys(gateway.dependencies)) {
      if (!dep.startsWith('@herald/')) assert.ok(has(dep), `production dependency ${dep} is missing`);
    }
    const root = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
    for (const dev of ['typescript', '@biomejs/biome', 'fast-check', '@types/node']) {
      assert.ok(dev in root.devDependencies, `${dev} is no longer a dev dependency: update this test`);
    }
    for (const dev of ['typescript', '@biomejs/biome', 'fast-check'])
      assert.ok(!has(dev), `dev tool ${dev} is in the image`);
  });

  test('Dockerfile - the build stage installs from the same manifests as the image builder', () => {
    const build = stages[0]!;
    const installAt = build.instructions.findIndex((i) => i.op === 'RUN' && /npm (install|ci)/.test(i.rest));
    const manifests = copies({ ...build, instructions: build.instructions.slice(0, installAt) })
      .flatMap((c) => c.sources)
      .filter((s) => /(^|\/)package(-lock)?\.json$/.test(s));
    assert.deepEqual(manifests.sort(), [...MANIFESTS].sort());
  });

  test("chart - the chart's default image reference names the gateway image", () => {
    const values = parse(readFileSync(join(REPO, 'charts/herald/values.yaml'), 'utf8'));
    const chart = parse(readFileSync(join(REPO, 'charts/herald/Chart.yaml'), 'utf8'));
    assert.equal(`${values.image.repository}:${values.image.tag || chart.appVersion}`, index['gateway']!.ref);
  });
});

describe('reproducible', () => {
  test('build - a second build, npm install included, gives the same bytes and digests', async () => {
    const out = await makeTempDir('herald-image-again-');
    try {
      const again = buildImages({ out, freshDeps: true });
      for (const name of NAMES) {
        assert.deepEqual(
          again[name],
          index[name],
          `${name} differs from .images/images.json: either the build is not reproducible or .images is stale (make image-test rebuilds it)`,
        );
      }
    } finally {
      await removeTempDir(out);
    }
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function status(url: string): Promise<number | string> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2_000) })).status;
  } catch (error) {
    return (error as Error).message;
  }
}

describe('the images run', () => {
  const running: Container[] = [];
  let dir = '';
  const rootOf = (name: string) => join(dir, name, 'root');
  before(async () => {
    requireRoot();
    dir = await makeTempDir('herald-image-run-');
    for (const name of NAMES)
      extractRootfs(join(OUT, index[name]!.file), join(dir, name, 'archive'), rootOf(name));
  });
  after(async () => {
    await Promise.all(running.map((c) => c.proc.stop()));
    if (dir) await removeTempDir(dir);
  });
  const run = (name: string, opts: Parameters<typeof runContainer>[2]) => {
    const c = runContainer(rootOf(name), image(name).config.config, opts);
    running.push(c);
    return c;
  };

  test("gateway - runs as uid 1000 on a read-only root; /healthz, /readyz and /metrics answer; the chart's helm test passes; SIGTERM exits 0", async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${port}`;
    const gw = run('gateway', {
      name: 'gateway image',
      env: {
        HERALD_AUTH: 'none',
        HERALD_HOST: '127.0.0.1',
        HERALD_PORT: String(port),
        HERALD_METRICS_PORT: String(metricsPort),
        HERALD_DRAIN_MS: '200',
      },
    });
    await gw.proc.waitUntil(async () => (await status(`${url}/readyz`)) === 200, {
      within: 30_000,
      what: `GET ${url}/readyz`,
    });
    assert.equal(await status(`${url}/healthz`), 200);
    assert.equal(await status(`http://127.0.0.1:${metricsPort}/metrics`), 200);
    const uid = readFileSync(`/proc/${gw.init()}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1];
    assert.equal(uid, '1000', 'the gateway runs as uid 1000');

    // templates/tests/stream-test.yaml: the gateway image with the script mounted at /test.
    const template = readFileSync(join(REPO, 'charts/herald/templates/tests/stream-test.yaml'), 'utf8');
    const command = /^\s+command: \[(.+)\]$/m.exec(template)?.[1]?.split(/,\s*/);
    assert.ok(command, 'found no `command: [...]` in the helm test template');
    const helmTest = run('gateway', {
      name: 'helm test pod',
      command,
      env: { HERALD_URL: url, HERALD_AUTH: 'none' },
      mounts: [{ host: join(REPO, 'charts/herald/files'), at: '/test', readOnly: true }],
    });
    const exit = await helmTest.proc.exited;
    assert.equal(exit.code, 0, `the helm test script failed:\n${helmTest.proc.output.lines.join('\n')}`);
    assert.match(helmTest.proc.output.lines.join('\n'), /received/);

    gw.signal('SIGTERM');
    const stopped = await Promise.race([
      gw.proc.exited,
      new Promise((r) => setTimeout(r, 10_000, 'timeout')),
    ]);
    assert.deepEqual(stopped, { code: 0, signal: null }, 'the gateway exits 0 on SIGTERM');
  });

  test("nats-server - starts JetStream with the chart's StatefulSet arguments as uid 1000, with /etc/nats and /data mounted", async () => {
    const [port, monitor] = [await freePort(), await freePort()];
    const work = join(dir, 'nats-run');
    const conf = join(work, 'conf');
    const data = join(work, 'data');
    for (const d of [conf, data]) mkdirSync(d, { recursive: true });
    // The chart's own nats.conf is rendered by helm; this one only moves the ports to free loopback ones.
    writeFileSync(join(conf, 'nats.conf'), `listen: "127.0.0.1:${port}"\nhttp: "127.0.0.1:${monitor}"\n`);
    chownSync(data, 1000, 1000);
    const statefulSet = readFileSync(join(REPO, 'charts/herald/templates/nats.yaml'), 'utf8');
    const argsBlock = /^\s+args:\n((?:\s+- .+\n)+)/m.exec(statefulSet)?.[1];
    assert.ok(argsBlock, 'found no args: list in templates/nats.yaml');
    const args = argsBlock
      .trim()
      .split('\n')
      .map((l) => l.trim().replace(/^- /, '').replace('$(POD_NAME)', 'herald-nats-0'));
    const nats = run('nats-server', {
      name: 'nats-server image',
      args,
      mounts: [
        { host: conf, at: '/etc/nats', readOnly: true },
        { host: data, at: '/data' },
      ],
    });
    const health = `http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`;
    await nats.proc.waitUntil(async () => (await status(health)) === 200, {
      within: 30_000,
      what: `GET ${health}`,
    });
    assert.ok(readdirSync(data).includes('jetstream'), 'JetStream writes its store under /data');
    nats.signal('SIGTERM');
    const exit = await nats.proc.exited;
    assert.equal(exit.signal, null, 'nats-server exits on SIGTERM');
  });

  test('pause - stays up as PID 1, reaps orphans of its PID namespace, exits 0 on SIGTERM', async () => {
    const pause = run('pause', { name: 'pause image' });
    await pause.proc.waitUntil(() => existsSync(`/proc/${pause.init()}/ns/pid`), {
      within: 5_000,
      what: 'pause to start',
    });
    const pid = pause.init();
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(pause.proc.running, 'pause keeps running');
    // An orphan in pause's PID namespace: its parent (a subshell) exits at once, so the kernel
    // makes pause its parent; once it exits, only pause can collect it.
    // Its output goes to /dev/null, or spawnSync would wait for it through the inherited pipes.
    const orphan = '(sleep 1 </dev/null >/dev/null 2>&1 &); exit 0';
    const r = spawnSync('nsenter', [`--pid=/proc/${pid}/ns/pid`, '--', 'sh', '-c', orphan], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `nsenter failed: ${r.stderr}`);
    // Of every thread: the kernel gives an orphan to any live thread of the namespace's init.
    const childrenOf = () =>
      readdirSync(`/proc/${pid}/task`)
        .map((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim())
        .filter((c) => c !== '')
        .join(' ');
    assert.notEqual(childrenOf(), '', 'the orphan was reparented to pause');
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal(childrenOf(), '', 'pause reaped the orphan (no zombie left)');
    pause.signal('SIGTERM');
    assert.deepEqual(await pause.proc.exited, { code: 0, signal: null }, 'pause exits 0 on SIGTERM');
  });
});
