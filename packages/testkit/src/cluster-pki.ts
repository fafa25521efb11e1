import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * The one-node cluster's credentials, made with Debian's `openssl` (Node's crypto makes keys but
 * cannot issue X.509 certificates): a throw-away CA, one certificate per identity, a key pair
 * for service-account tokens, and a kubeconfig per client. Each identity's name is what the API
 * server's authorizers expect of it (`system:node:<node>` in `system:nodes` for the Node
 * authorizer and NodeRestriction, `system:kube-scheduler`, … for RBAC's built-in bindings).
 */

const execFileAsync = promisify(execFile);

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

/** A certificate to issue: `O` (groups) and `CN` (user), and for a server its SANs. */
export interface Identity {
  /** File stem: `<name>.crt`, `<name>.key`. */
  readonly name: string;
  readonly cn: string;
  readonly groups?: readonly string[];
  /** Serving certificate SANs (`IP:…`, `DNS:…`); a client certificate when absent. */
  readonly sans?: readonly string[];
}

export interface Pem {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface Pki {
  readonly dir: string;
  readonly caFile: string;
  readonly caKeyFile: string;
  readonly ca: string;
  /** Service-account token signing key (private) and its public half. */
  readonly saKeyFile: string;
  readonly saPubFile: string;
  readonly issued: ReadonlyMap<string, Pem>;
  get(name: string): Pem;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd: dir });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        'openssl is needed to make the cluster certificates; install it (apt-get install openssl)',
      );
    }
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

/** Makes a CA, the service-account key pair and one certificate per identity in `dir` (created, mode 0700). */
export async function makePki(dir: string, identities: readonly Identity[]): Promise<Pki> {
  await mkdir(dir, { mode: 0o700, recursive: true });
  await writeFile(join(dir, 'openssl.cnf'), OPENSSL_CONFIG);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc'];
  const common = ['-config', 'openssl.cnf', '-days', '7'];
  await openssl(dir, [
    'req',
    '-x509',
    ...ec,
    ...common,
    '-extensions',
    'ca',
    '-subj',
    '/CN=herald-cluster-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  ]);
  const issue = (id: Identity) => {
    const subject = [...(id.groups ?? []).map((g) => `/O=${g}`), `/CN=${id.cn}`].join('');
    return openssl(dir, [
      'req',
      '-x509',
      ...ec,
      ...common,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-extensions',
      id.sans ? 'serving' : 'client',
      ...(id.sans ? ['-addext', `subjectAltName=${id.sans.join(',')}`] : []),
      '-subj',
      subject,
      '-keyout',
      `${id.name}.key`,
      '-out',
      `${id.name}.crt`,
    ]);
  };
  await Promise.all([
    ...identities.map(issue),
    openssl(dir, [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-out',
      'sa.key',
    ]).then(() => openssl(dir, ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'])),
  ]);
  const issued = new Map<string, Pem>();
  for (const id of identities) {
    const certFile = join(dir, `${id.name}.crt`);
    const keyFile = join(dir, `${id.name}.key`);
    issued.set(id.name, {
      certFile,
      keyFile,
      cert: await readFile(certFile, 'utf8'),
      key: await readFile(keyFile, 'utf8'),
    });
  }
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    caKeyFile: join(dir, 'ca.key'),
    ca: await readFile(join(dir, 'ca.crt'), 'utf8'),
    saKeyFile: join(dir, 'sa.key'),
    saPubFile: join(dir, 'sa.pub'),
    issued,
    get(name: string): Pem {
      const pem = issued.get(name);
      if (pem === undefined) throw new Error(`no certificate named ${name} was issued`);
      return pem;
    },
  };
}

/** A kubeconfig (JSON, which is YAML) for one client certificate, credentials embedded. */
export function kubeconfig(server: string, ca: string, user: string, pem: Pem): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'herald', cluster: { server, 'certificate-authority-data': b64(ca) } }],
      users: [
        { name: user, user: { 'client-certificate-data': b64(pem.cert), 'client-key-data': b64(pem.key) } },
      ],
      contexts: [{ name: 'herald', context: { cluster: 'herald', user } }],
      'current-context': 'herald',
    },
    null,
    2,
  )}\n`;
}
