import { request as httpsRequest } from 'node:https';

/** An API server's answer. */
export interface KubeResponse {
  readonly status: number;
  readonly body: string;
  /** `body` parsed as JSON (undefined when it is not JSON). */
  readonly json: unknown;
}

/** The client certificate and the CA that a request to the API server uses. */
export interface KubeTls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * One request to a Kubernetes API server: a string body goes as YAML (or `contentType`), any other
 * as JSON. Bounded at 10 s; shared by the control plane and the one-node cluster harnesses.
 */
export function kubeApiRequest(
  server: string,
  tls: KubeTls,
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<KubeResponse> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (payload !== undefined) {
    headers['content-type'] =
      contentType ?? (typeof body === 'string' ? 'application/yaml' : 'application/json');
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, server),
      { method, headers, ...tls, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}
