/** HTTP helpers for tests against a gateway: publish bodies and stream paths. */

export interface PublishResponse {
  readonly status: number;
  readonly headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: JSON of any documented shape; tests assert on it.
  readonly body: any;
}

export function streamPath(query: Record<string, string | readonly string[]>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    for (const one of typeof v === 'string' ? [v] : v) q.append(k, one);
  return `/v1/stream?${q}`;
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<PublishResponse> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: parsed };
}
