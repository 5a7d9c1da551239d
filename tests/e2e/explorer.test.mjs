// explorer.test.mjs - the explorer page in headless Chromium (playwright-core) against the real
// attention-server: pictures equal the API's numbers, hover, keyboard, layer grid, head view,
// downloads, errors next to their control, the application views, and CORS from another origin.
//
// Environment: ATTN_SERVER_BIN (the server binary, required), ATTN_CHROMIUM (default
// /usr/bin/chromium), ATTN_ARTIFACTS (screenshots; default tests/artifacts).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER = process.env.ATTN_SERVER_BIN;
const CHROMIUM = process.env.ATTN_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ATTN_ARTIFACTS || path.join(here, '..', 'artifacts');
const SENTENCE = 'The cat sat on the mat';
const WAIT_MS = 20000;

assert.ok(SERVER, 'set ATTN_SERVER_BIN to the attention-server binary');
mkdirSync(ARTIFACTS, { recursive: true });

// ------------------------------------------------------------------ the server

/** Starts attention-server on a free port; resolves to {proc, base, stderr()}. */
function startServer(extraArgs = []) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ATTN_')));
  const proc = spawn(SERVER, ['--host', '127.0.0.1', '--port', '0', '--threads', '2', ...extraArgs], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 30000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, base: m[1], stderr: () => err });
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}): ${err}`)));
  });
}

/** SIGTERM, then the exit status must be 0 (under ASan a leak makes it non-zero). */
async function stopServer(s) {
  if (!s || s.proc.exitCode !== null) return;
  const done = new Promise((resolve) => s.proc.on('exit', (code, sig) => resolve({ code, sig })));
  s.proc.kill('SIGTERM');
  const { code, sig } = await done;
  assert.equal(code, 0, `server exit ${code} ${sig}: ${s.stderr()}`);
}

async function api(base, route, body) {
  const r = await fetch(base + route, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
}

// ------------------------------------------------------------------ the documented embedding

// README "The explorer": lower-case the token, FNV-1a-32 of its UTF-8 bytes XOR
// (seed * 0x9E3779B1 mod 2^32) seeds mulberry32; value = round4(scale * (2u - 1)).
function expectedEmbedding(token, dim, seed, scale) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(token.toLowerCase(), 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  let a = (h ^ Math.imul(seed, 0x9e3779b1)) >>> 0;
  const out = [];
  for (let i = 0; i < dim; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out.push(Math.round(scale * (2 * u - 1) * 1e4) / 1e4 + 0);
  }
  return out;
}

// ------------------------------------------------------------------ the browser

let server, corsServer, browser, context, page, other;
const problems = []; // console errors, page errors, failed requests of the explorer page

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Waits for the page's next answer from route and returns [request body, answer]. */
async function nextAnswer(route, action) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(route) && r.request().method() === 'POST', { timeout: WAIT_MS }),
    action(),
  ]);
  return [JSON.parse(res.request().postData()), await res.json()];
}

/** The weights drawn in a view: [k][i][j] from the rects' data-w. */
async function drawn(selector) {
  return page.$$eval(`${selector} rect[data-w]`, (rects) => {
    const out = [];
    for (const r of rects) {
      const k = +r.dataset.k, i = +r.dataset.i, j = +r.dataset.j;
      ((out[k] ??= [])[i] ??= [])[j] = Number(r.dataset.w);
    }
    return out;
  });
}

function assertClose(actual, expected, what, tol = 1e-6) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  expected.forEach((e, i) => {
    if (Array.isArray(e)) assertClose(actual[i], e, `${what}[${i}]`, tol);
    else assert.ok(Math.abs(actual[i] - e) <= tol, `${what}[${i}]: ${actual[i]} != ${e}`);
  });
}

before(async () => {
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // a request superseded by a newer one is aborted on purpose
    if (r.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
});

after(async () => {
  await browser?.close();
  await stopServer(server);
  await stopServer(corsServer);
  await new Promise((r) => (other ? other.close(r) : r()));
});

// ------------------------------------------------------------------ the sentence view

describe('explorer page', () => {
  test('loads with no console errors and draws the default sentence', async () => {
    await page.goto(server.base + '/');
    await page.waitForSelector('body[data-ready="1"]', { timeout: WAIT_MS });
    await page.waitForSelector('#view-heads svg rect[data-w]');
    assert.equal(await page.title(), 'explore-attention · explorer');
    assert.deepEqual(problems, []);
  });

  test('"The cat sat on the mat": one heatmap per head, equal to the API', async () => {
    await page.fill('#sentence', '');
    const [body, answer] = await nextAnswer('/v1/multihead_attention', () => page.fill('#sentence', SENTENCE));
    await page.waitForFunction(() => document.querySelectorAll('#view-heads g[data-role="heatmap"]').length === 4);
    const tokens = ['The', 'cat', 'sat', 'on', 'the', 'mat'];
    assert.deepEqual(body.tokens, tokens);
    assert.equal(body.num_heads, 4);
    // the page's embeddings are the documented ones
    assert.deepEqual(body.query, tokens.map((t) => expectedEmbedding(t, 16, 0, 3)));
    assert.deepEqual(body.query[0], body.query[4], '"The" and "the" share an embedding');
    // the same request sent here gives the numbers the page drew
    const mine = await api(server.base, '/v1/multihead_attention', body);
    assert.deepEqual(mine.weights, answer.weights);
    const pictures = await drawn('#view-heads');
    assert.equal(pictures.length, 4, 'one heatmap per head');
    for (const w of pictures) assert.equal(w.length, 6);
    assertClose(pictures, mine.weights, 'weights');
    const titles = await page.$$eval('#view-heads g[data-role="heatmap"] > text:first-of-type', (t) => t.map((x) => x.textContent));
    assert.deepEqual(titles, ['head 0', 'head 1', 'head 2', 'head 3']);
    await shot('explorer-sentence');
    // another embedding seed: still the documented vectors
    const [seeded] = await nextAnswer('/v1/multihead_attention', () => page.fill('#emb_seed', '7'));
    assert.deepEqual(seeded.query, tokens.map((t) => expectedEmbedding(t, 16, 7, 3)));
    await nextAnswer('/v1/multihead_attention', () => page.fill('#emb_seed', '0'));
  });

  test('renders within a second of typing', async () => {
    const t0 = Date.now();
    await page.fill('#sentence', SENTENCE + ' today');
    await page.waitForFunction(() => document.querySelectorAll('#view-heads g[data-role="heatmap"] text[data-role="row"]').length === 4 * 7);
    const ms = Date.now() - t0;
    assert.ok(ms < 1000, `took ${ms} ms`);
    await page.fill('#sentence', SENTENCE);
    await page.waitForFunction(() => document.querySelectorAll('#view-heads text[data-role="row"]').length === 4 * 6);
  });

  test('hovering a cell shows its weight and highlights its tokens', async () => {
    const w = (await drawn('#view-heads'))[2][1][3];
    await page.hover('#view-heads rect[data-k="2"][data-i="1"][data-j="3"]');
    const tip = page.locator('#tooltip');
    await tip.waitFor({ state: 'visible' });
    const text = await tip.textContent();
    assert.match(text, /head 2/);
    assert.match(text, /cat → on/);
    assert.ok(text.includes(w.toFixed(4)), `tooltip "${text}" lacks ${w.toFixed(4)}`);
    const weight = await page.$eval('#view-heads text[data-role="row"][data-k="2"][data-i="1"]', (e) => e.getAttribute('font-weight'));
    assert.equal(weight, '700', 'the row token is highlighted');
    assert.equal(await page.$eval('#view-heads text[data-role="col"][data-k="2"][data-j="3"]', (e) => e.getAttribute('font-weight')), '700');
    await shot('explorer-hover');
    await page.mouse.move(5, 5);
  });

  test('the keyboard reads the cells', async () => {
    await page.focus('#view-heads g[data-role="heatmap"][data-k="1"]');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowRight');
    const w = (await drawn('#view-heads'))[1][1][1];
    const said = await page.textContent('#announce');
    assert.ok(said.includes('head 1') && said.includes('cat → cat') && said.includes(w.toFixed(4)), said);
  });

  test('head view: lines per head, hover focuses a token', async () => {
    await page.click('#sub-headview');
    await page.waitForSelector('#view-headview svg line', { state: 'attached' });
    const lines = await page.$$eval('#view-headview line', (l) => l.length);
    assert.ok(lines >= 6 * 4, `only ${lines} lines`);
    await page.hover('#view-headview text[data-side="q"][data-i="2"]');
    const visible = await page.$$eval('#view-headview line', (ls) => ls.filter((l) => l.getAttribute('visibility') !== 'hidden').map((l) => +l.dataset.i));
    assert.ok(visible.length > 0 && visible.every((i) => i === 2), 'only the lines of "sat" stay');
    const vals = await page.$$eval('#view-headview text[data-role="val"]', (v) => v.map((x) => x.textContent));
    assert.ok(vals.every((v) => /^\d\.\d\d$/.test(v)), vals.join(','));
    await shot('explorer-headview');
    await page.mouse.move(5, 5);
    await page.click('#sub-heads');
  });

  test('an API error is shown next to the control that caused it', async () => {
    await page.fill('#num_heads', '3');
    await page.waitForFunction(() => document.querySelector('#err-num_heads').textContent !== '');
    const msg = await page.textContent('#err-num_heads');
    assert.match(msg, /400 invalid_argument/);
    assert.match(msg, /does not divide/);
    assert.match(msg, /\/num_heads/);
    assert.equal(await page.getAttribute('#num_heads', 'aria-invalid'), 'true');
    await shot('explorer-error');
    problems.length = 0; // that 400 was the point
    await page.fill('#num_heads', '4');
    await page.waitForFunction(() => document.querySelector('#err-num_heads').textContent === '');
    assert.equal(await page.getAttribute('#num_heads', 'aria-invalid'), null);
  });

  test('the SVG download is a valid SVG of the heatmaps; PNG and curl too', async () => {
    const [svgDl] = await Promise.all([page.waitForEvent('download'), page.click('.downloads[data-for="text"] [data-dl="svg"]')]);
    assert.equal(svgDl.suggestedFilename(), 'attention.svg');
    const svg = readFileSync(await svgDl.path(), 'utf8');
    const parsed = await page.evaluate((text) => {
      const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
      return {
        error: doc.querySelector('parsererror')?.textContent ?? null,
        root: doc.documentElement.localName,
        ns: doc.documentElement.namespaceURI,
        cells: doc.querySelectorAll('rect[data-w]').length,
        tokens: [...doc.querySelectorAll('text[data-role="row"][data-k="0"]')].map((t) => t.textContent),
      };
    }, svg);
    assert.equal(parsed.error, null);
    assert.equal(parsed.root, 'svg');
    assert.equal(parsed.ns, 'http://www.w3.org/2000/svg');
    assert.equal(parsed.cells, 4 * 36);
    assert.deepEqual(parsed.tokens, ['The', 'cat', 'sat', 'on', 'the', 'mat']);
    if (existsSync('/usr/bin/xmllint')) await promisify(execFile)('/usr/bin/xmllint', ['--noout', await svgDl.path()]);

    const [pngDl] = await Promise.all([page.waitForEvent('download'), page.click('.downloads[data-for="text"] [data-dl="png"]')]);
    const png = readFileSync(await pngDl.path());
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(png.length > 2000);

    await page.click('.downloads[data-for="text"] [data-dl="curl"]');
    const cmd = await page.textContent('#curl-text');
    assert.match(cmd, /^curl -s '.*\/v1\/multihead_attention'/);
    const { stdout } = await promisify(execFile)('sh', ['-c', cmd]);
    const viaCurl = JSON.parse(stdout);
    assertClose(viaCurl.weights, await drawn('#view-heads'), 'curl weights');
    await page.click('#curl-close');
  });

  test('transformer encoder, 2 layers: the layer x head grid and its head view', async () => {
    const [body, answer] = await nextAnswer('/v1/transformer/encoder', () => page.selectOption('#engine', 'encoder'));
    assert.equal(body.num_layers, 2);
    assert.equal(answer.attentions.length, 2);
    await page.click('#sub-layers');
    await page.waitForFunction(() => document.querySelectorAll('#view-layers g[data-role="heatmap"]').length === 8);
    const grid = await drawn('#view-layers');
    assertClose(grid, answer.attentions.flat(), 'layer grid');
    await shot('explorer-layers');
    // a thumbnail opens that layer and head in the head view
    await page.click('#view-layers rect[data-k="6"][data-i="0"][data-j="0"]');
    await page.waitForSelector('#view-headview:not([hidden]) svg line', { state: 'attached' });
    assert.equal(await page.inputValue('#layer-text'), '1');
    const heads = await page.$$eval('#view-headview line', (ls) => [...new Set(ls.map((l) => l.dataset.h))]);
    assert.deepEqual(heads, ['2']);
    await shot('explorer-layers-headview');
    await page.click('#sub-heads');
    const layer1 = await drawn('#view-heads');
    assertClose(layer1, answer.attentions[1], 'heads of layer 1');
    await page.selectOption('#engine', 'mha');
    await page.waitForFunction(() => document.querySelectorAll('#view-heads g[data-role="heatmap"]').length === 4);
  });

  test('Q/K/V and comparison views draw what /v1/attention and two configurations return', async () => {
    // the view tabs follow the keyboard (arrow keys move between them)
    await page.focus('#tab-text');
    const [body, answer] = await nextAnswer('/v1/attention', () => page.keyboard.press('ArrowRight'));
    assert.equal(await page.getAttribute('#tab-qkv', 'aria-selected'), 'true');
    assert.equal(await page.isHidden('#panel-text'), true);
    await page.waitForSelector('#view-qkv svg rect[data-w]');
    assert.deepEqual(body.tokens, ['the', 'cat', 'sat', 'down']);
    assertClose((await drawn('#view-qkv'))[0], answer.weights, 'qkv weights');
    await shot('explorer-qkv');
    await page.click('#tab-compare');
    await page.waitForFunction(() => document.querySelectorAll('#view-compare svg.view-root').length === 4);
    await shot('explorer-compare');
  });

  test('application views: translation, image patches, audio frames, text to image', async () => {
    const [, tr] = await nextAnswer('/v1/attention', () => page.click('#tab-translation'));
    await page.waitForSelector('#view-translation svg rect[data-w]');
    const summary = await page.textContent('#summary-translation');
    assert.match(summary, /chat→cat/);
    assert.equal(tr.weights.length, 8);
    await shot('explorer-translation');

    await nextAnswer('/v1/attention', () => page.click('#tab-image'));
    await page.waitForSelector('#view-image svg image');
    assert.equal(await page.$$eval('#view-image g[data-role="patches"] rect[data-pick]', (r) => r.length), 64);
    await page.click('#view-image g[data-role="patches"] rect[data-pick="0"]');
    assert.match(await page.textContent('#view-image svg text'), /patch r0c0/);
    await shot('explorer-image');

    await nextAnswer('/v1/attention', () => page.click('#tab-audio'));
    await page.waitForSelector('#view-audio svg path');
    await shot('explorer-audio');

    const [t2i] = await nextAnswer('/v1/attention', () => page.click('#tab-t2i'));
    assert.equal(t2i.key.length, 64);
    await page.waitForSelector('#view-t2i svg image');
    await shot('explorer-t2i');
    assert.deepEqual(problems, []);
  });
});

// ------------------------------------------------------------------ models

describe('pretrained models', () => {
  // The service has no model routes yet: their answers are stood in for here, shaped as the
  // contract says ({"models": [...]}, tokens and attentions [L][H][n][n]).
  test('a service without the model routes: /v1/models 404 is handled quietly', async () => {
    const p = await context.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await p.route('**/v1/info', async (route) => {
      const res = await route.fetch();
      const info = await res.json();
      delete info.models; // a service that does not list them here
      await route.fulfill({ response: res, json: info });
    });
    await p.route('**/v1/models', (route) => route.fulfill({
      status: 404, json: { error: { status: 404, code: 'not_found', message: 'no such path: /v1/models', field: '' } },
    }));
    const asked = p.waitForResponse((r) => r.url().endsWith('/v1/models'));
    await p.goto(server.base + '/');
    assert.equal((await asked).status(), 404);
    await p.waitForSelector('body[data-ready="1"]');
    await p.waitForSelector('#view-heads svg rect[data-w]');
    assert.equal(await p.$$eval('#engine option', (o) => o.length), 2);
    assert.deepEqual(errors, []);
    await p.close();
  });

  test('a service with models: the model is offered and its attention drawn', async () => {
    const p = await context.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(e.message));
    p.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    const tokens = ['[CLS]', 'the', 'cat', 'sat', '[SEP]'];
    const n = tokens.length;
    const row = (i, l, h) => Array.from({ length: n }, (_, j) => (j === (i + l + h) % n ? 0.6 : 0.1));
    const attentions = [0, 1].map((l) => [0, 1, 2].map((h) => Array.from({ length: n }, (_, i) => row(i, l, h))));
    let asked = null;
    await p.route('**/v1/info', async (route) => {
      const res = await route.fetch();
      await route.fulfill({ response: res, json: { ...(await res.json()), models: [{ name: 'tiny-bert' }] } });
    });
    await p.route('**/v1/models', (route) => route.fulfill({
      json: { models: [{ name: 'tiny-bert', architecture: 'bert', layers: 2, heads: 3, hidden_size: 12 }, { name: 'vit-tiny', architecture: 'vit', layers: 1, heads: 1 }] },
    }));
    await p.route('**/v1/models/tiny-bert/attention', async (route) => {
      asked = JSON.parse(route.request().postData());
      await route.fulfill({ json: { tokens, input_ids: [101, 1, 2, 3, 102], attentions } });
    });
    await p.goto(server.base + '/');
    await p.waitForSelector('body[data-ready="1"]');
    const options = await p.$$eval('#engine option', (o) => o.map((x) => x.value));
    assert.deepEqual(options, ['mha', 'encoder', 'model:tiny-bert'], 'text models only');
    assert.equal(await p.$eval('#engine', (s) => s.value), 'model:tiny-bert', 'the page starts on the served model');
    await p.waitForFunction(() => document.querySelector('#summary-text').textContent.includes('2 layers'));
    await Promise.all([
      p.waitForResponse((r) => r.url().endsWith('/v1/models/tiny-bert/attention') &&
        JSON.parse(r.request().postData()).text === 'the cat sat'),
      p.fill('#sentence', 'the cat sat'),
    ]);
    assert.deepEqual(asked, { text: 'the cat sat' });
    assert.equal(await p.isDisabled('#num_heads'), true, 'the model decides heads and layers');
    const drawn = await p.$$eval('#view-heads rect[data-w]', (r) => r.length);
    assert.equal(drawn, 3 * n * n);
    const rows = await p.$$eval('#view-heads text[data-role="row"][data-k="0"]', (t) => t.map((x) => x.textContent));
    assert.deepEqual(rows, tokens);
    await p.click('#sub-layers');
    await p.waitForFunction(() => document.querySelectorAll('#view-layers g[data-role="heatmap"]').length === 6);
    await p.screenshot({ path: path.join(ARTIFACTS, 'explorer-model.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await p.close();
  });
});

describe('a pretrained model served for real', () => {
  const dir = path.join(here, '..', 'data', 'models', 'bert-tiny');
  test('its attention for "The cat sat on the mat", per layer and head, equals the API', { skip: !existsSync(dir) && 'no tests/data/models/bert-tiny' }, async () => {
    const s = await startServer(['--model', `bert-tiny=${dir}`]);
    const p = await context.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(e.message));
    p.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    try {
      await p.goto(s.base + '/');
      await p.waitForSelector('body[data-ready="1"]');
      const label = await p.textContent('#engine option[value="model:bert-tiny"]');
      assert.match(label, /bert-tiny \(bert, \d+ layers, \d+ heads\)/);
      assert.equal(await p.$eval('#engine', (s) => s.value), 'model:bert-tiny', 'the page starts on the served model');
      const [res] = await Promise.all([
        p.waitForResponse((r) => r.url().endsWith('/v1/models/bert-tiny/attention') &&
          JSON.parse(r.request().postData()).text === SENTENCE),
        p.fill('#sentence', SENTENCE),
      ]);
      const answer = await res.json();
      assert.deepEqual(JSON.parse(res.request().postData()), { text: SENTENCE });
      const L = answer.attentions.length, H = answer.attentions[0].length;
      await p.click('#sub-layers');
      await p.waitForFunction((k) => document.querySelectorAll('#view-layers g[data-role="heatmap"]').length === k, L * H);
      const grid = await p.$$eval('#view-layers rect[data-w]', (rects) => {
        const out = [];
        for (const r of rects) ((out[+r.dataset.k] ??= [])[+r.dataset.i] ??= [])[+r.dataset.j] = Number(r.dataset.w);
        return out;
      });
      assertClose(grid, answer.attentions.flat(), 'model attentions');
      const rows = await p.$$eval('#view-heads text[data-role="row"][data-k="0"]', (t) => t.map((x) => x.textContent));
      assert.deepEqual(rows, answer.tokens);
      await p.screenshot({ path: path.join(ARTIFACTS, 'explorer-model-bert.png'), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
      await stopServer(s);
    }
  });
});

// ------------------------------------------------------------------ CORS

describe('CORS', () => {
  /** A tiny static server on another port: its pages are of another origin. */
  async function otherOrigin() {
    other ??= await new Promise((resolve) => {
      const s = http.createServer((req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<!doctype html><title>another origin</title><p>a page on another origin</p>');
      });
      s.listen(0, '127.0.0.1', () => resolve(s));
    });
    return `http://127.0.0.1:${other.address().port}`;
  }

  /** That page calls the API with a JSON POST (so the browser sends a preflight first). */
  async function callFrom(apiBase) {
    const origin = await otherOrigin();
    const p = await context.newPage();
    try {
      await p.goto(origin + '/');
      const result = await p.evaluate(async (url) => {
        try {
          const r = await fetch(url + '/v1/attention', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ query: [[1, 0]], key: [[1, 0], [0, 1]], value: [[1], [2]] }),
          });
          return { ok: true, status: r.status, weights: (await r.json()).weights, time: r.headers.get('X-Inference-Time') };
        } catch (e) {
          return { ok: false, error: String(e) };
        }
      }, apiBase);
      return { origin, result };
    } finally {
      await p.close();
    }
  }

  test('a page on another origin cannot read answers without --cors-origin', async () => {
    const { result } = await callFrom(server.base);
    assert.equal(result.ok, false);
    assert.match(result.error, /TypeError/);
  });

  test('with --cors-origin it can, preflight included', async () => {
    corsServer = await startServer(['--cors-origin', `http://example.invalid,${await otherOrigin()}`]);
    const { result, origin } = await callFrom(corsServer.base);
    assert.equal(result.ok, true, result.error);
    assert.equal(result.status, 200);
    assert.equal(result.weights.length, 1);
    assert.ok(result.time !== null, 'X-Inference-Time is exposed');
    // the same preflight by hand
    const pre = await fetch(corsServer.base + '/v1/attention', {
      method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
    assert.match(pre.headers.get('access-control-allow-headers'), /Content-Type/);
    const foreign = await fetch(corsServer.base + '/healthz', { headers: { Origin: 'http://127.0.0.1:1' } });
    assert.equal(foreign.headers.get('access-control-allow-origin'), null);
  });
});
