import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headEnd, parseRequestHead } from '../../src/http/request-head.ts';

const head = (s: string) => parseRequestHead(Buffer.from(s, 'latin1'));

describe('parseRequestHead', () => {
  it('reads the request line and headers of a plain request', () => {
    const h = head(
      'GET /v1/stream?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID:  e1-5 \r\nAccept: text/event-stream\r\n\r\n',
    );
    assert.equal(h?.method, 'GET');
    assert.equal(h?.target, '/v1/stream?topic=a');
    assert.equal(h?.headers.get('last-event-id'), 'e1-5');
    assert.equal(h?.headers.get('host'), 'x');
  });

  it('leaves to node:http anything unusual: it must only be right about what it accepts', () => {
    for (const unusual of [
      'GET /v1/stream HTTP/1.1\r\nHost: x\r\n', // incomplete
      'GET /v1/stream HTTP/2.0\r\n\r\n',
      'GET http://x/v1/stream HTTP/1.1\r\n\r\n', // absolute form
      'GET  /v1/stream HTTP/1.1\r\n\r\n',
      'get /v1/stream HTTP/1.1\r\n\r\n',
      'GET /v1/stream HTTP/1.1\r\nHost : x\r\n\r\n', // space before colon (smuggling vector)
      'GET /v1/stream HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n', // obs-fold
      'GET /v1/stream HTTP/1.1\r\nX: a\r\nx: b\r\n\r\n', // repeated header
      'GET /v1/stream HTTP/1.1\r\nX: a\0b\r\n\r\n',
      'GET /v1/stream HTTP/1.1\nHost: x\n\n', // bare LF
      'GET /v1/stream HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n', // HTTP/1.1 without Host
    ]) {
      assert.equal(head(unusual), undefined, JSON.stringify(unusual));
    }
    // HTTP/1.0 has no Host requirement.
    assert.equal(head('GET /v1/stream?topic=a HTTP/1.0\r\n\r\n')?.target, '/v1/stream?topic=a');
  });

  it('finds the end of the head', () => {
    assert.equal(headEnd(Buffer.from('GET / HTTP/1.1\r\n\r\nbody')), 18);
    assert.equal(headEnd(Buffer.from('GET / HTTP/1.1\r\n')), -1);
  });
});
