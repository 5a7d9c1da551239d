// app.js - the explorer: the sentence, Q/K/V and comparison views, model discovery, start-up.
// Everything is computed by the service's public API; the page prepares inputs and draws.

import { ApiError, get, post } from './api.js';
import { diverging, esc, headColour, headView, heatmaps, interactHeatmaps } from './draw.js';
import { embedTokens, tokenize } from './embed.js';
import { setupApps } from './apps.js';
import {
  $, $$, ErrorSlots, InputError, curlDialog, downloadButtons, indexList, intOf, latest, numOf, roomFor, tabs, views,
} from './ui.js';

const tooltip = $('#tooltip');
const announce = $('#announce');
const ctx = { tooltip, announce };

// ------------------------------------------------------------------ shared request parts

/** The inputs every sentence-like view sends: embeddings, masks, pattern, positions. */
function sentenceInputs(tokens, el) {
  const dim = intOf(el.dim);
  if (!(dim >= 1)) throw new InputError('/dim', 'the width E must be a whole number of at least 1');
  const embScale = numOf(el.embScale) ?? 1;
  if (Number.isNaN(embScale)) throw new InputError('/emb_scale', 'the embedding scale must be a number');
  const embSeed = intOf(el.embSeed) ?? 0;
  if (!(embSeed >= 0)) throw new InputError('/emb_seed', 'the embedding seed must be a whole number of at least 0');
  return embedTokens(tokens, dim, embSeed, embScale);
}

/** causal, mask, key_padding_mask, pattern, positional and scale members from controls. */
function attentionOptions(tokens, el) {
  const o = {};
  const n = tokens.length;
  if (el.causal?.value) o.causal = el.causal.value === 'top_left' ? true : 'bottom_right';
  if (el.mask?.value === 'no_self') o.mask = tokens.map((_, i) => tokens.map((__, j) => i !== j));
  if (el.keyPadding) {
    const kp = indexList(el.keyPadding);
    if (kp === null) throw new InputError('/key_padding_mask', 'list token indices, e.g. 0 3');
    if (kp) o.key_padding_mask = Array.from({ length: n }, (_, j) => kp.includes(j));
  }
  const pattern = {};
  if (el.window) {
    const w = intOf(el.window);
    if (w !== undefined) pattern.window = w;
  }
  if (el.stride) {
    const s = intOf(el.stride);
    if (s !== undefined) pattern.stride = s;
  }
  if (el.globalTokens) {
    const g = indexList(el.globalTokens);
    if (g === null) throw new InputError('/pattern/global_tokens', 'list token indices, e.g. 0');
    if (g) pattern.global_tokens = g;
  }
  if (Object.keys(pattern).length) o.pattern = pattern;
  if (el.positional?.value) o.positional = { type: el.positional.value };
  if (el.scale) {
    const s = numOf(el.scale);
    if (s !== undefined) o.scale = s;
  }
  return o;
}

function kernelOf(value) {
  if (value === 'elu') return { type: 'linear', feature_map: 'elu' };
  if (value === 'favor') return { type: 'linear', feature_map: 'favor', num_features: 256, seed: 0 };
  return undefined;
}

const nowMs = () => performance.now();

// ------------------------------------------------------------------ the sentence view

const T = {
  form: $('#form-text'),
  sentence: $('#sentence'),
  engine: $('#engine'),
  dim: $('#dim'),
  embScale: $('#emb_scale'),
  embSeed: $('#emb_seed'),
  seed: $('#seed'),
  heads: $('#num_heads'),
  kvHeads: $('#num_kv_heads'),
  layers: $('#num_layers'),
  ff: $('#dim_feedforward'),
  causal: $('#causal'),
  mask: $('#mask'),
  keyPadding: $('#key_padding'),
  window: $('#window'),
  stride: $('#stride'),
  globalTokens: $('#global_tokens'),
  kernel: $('#kernel'),
  positional: $('#positional'),
  scale: $('#scale'),
  auto: $('#auto-text'),
  layer: $('#layer-text'),
  summary: $('#summary-text'),
};
const textErrors = new ErrorSlots($('#panel-text'), {
  '/sentence': 'err-sentence', '/text': 'err-sentence', '/query': 'err-sentence', '/input': 'err-sentence',
  '/tokens': 'err-sentence', '/dim': 'err-dim', '/emb_scale': 'err-emb_scale', '/emb_seed': 'err-emb_seed',
  '/seed': 'err-seed', '/num_heads': 'err-num_heads', '/nhead': 'err-num_heads', '/num_kv_heads': 'err-num_kv_heads',
  '/num_layers': 'err-num_layers', '/dim_feedforward': 'err-dim_feedforward', '/causal': 'err-causal',
  '/mask': 'err-mask', '/key_padding_mask': 'err-key_padding_mask', '/pattern': 'err-pattern',
  '/kernel': 'err-kernel', '/positional': 'err-positional', '/scale': 'err-scale',
}, 'err-text');
const textState = { result: null, layer: 0, shown: null, sub: 'sub-heads' };
const textSignal = latest();
const models = new Map(); // name -> the model's description from GET /v1/models

/** The request the sentence view's controls describe: {path, body, tokens}. */
function textRequest() {
  const tokens = tokenize(T.sentence.value);
  if (tokens.length === 0) throw new InputError('/sentence', 'type at least one word');
  const engine = T.engine.value;
  if (engine.startsWith('model:')) {
    const name = engine.slice(6);
    return { path: `/v1/models/${encodeURIComponent(name)}/attention`, body: { text: T.sentence.value }, tokens };
  }
  const x = sentenceInputs(tokens, T);
  const opts = attentionOptions(tokens, T);
  const seed = intOf(T.seed) ?? 0;
  const heads = intOf(T.heads) ?? 1;
  if (engine === 'encoder') {
    const body = { input: x, nhead: heads, num_layers: intOf(T.layers) ?? 1, seed, tokens, return: ['attentions'], ...opts };
    const ff = intOf(T.ff);
    if (ff !== undefined) body.dim_feedforward = ff;
    return { path: '/v1/transformer/encoder', body, tokens };
  }
  const body = { query: x, num_heads: heads, seed, tokens, return: ['weights'], ...opts };
  const kv = intOf(T.kvHeads);
  if (kv !== undefined) body.num_kv_heads = kv;
  const kernel = kernelOf(T.kernel.value);
  if (kernel) body.kernel = kernel;
  return { path: '/v1/multihead_attention', body, tokens };
}

/** The answer as {tokens, stacks [L][H][n][m], kvGroups?}. */
function textResult(req, ans) {
  if (req.path === '/v1/multihead_attention') {
    const H = ans.weights.length;
    const hkv = req.body.num_kv_heads ?? H;
    return { tokens: ans.tokens ?? req.tokens, stacks: [ans.weights], kv: (h) => Math.floor((h * hkv) / H), hkv, H, meta: ans.meta };
  }
  const stacks = ans.attentions ?? ans.encoder_attentions;
  if (!Array.isArray(stacks)) throw new ApiError(0, 'unexpected', 'the answer has no attentions');
  return { tokens: ans.tokens ?? req.tokens, stacks, H: stacks[0].length, meta: ans.meta ?? {} };
}

async function runText() {
  textErrors.clear();
  let req;
  try {
    req = textRequest();
  } catch (err) {
    textErrors.show(err);
    return;
  }
  const signal = textSignal();
  const t0 = nowMs();
  try {
    const ans = await post(req.path, req.body, { signal });
    const r = textResult(req, ans);
    r.roundTripMs = nowMs() - t0;
    textState.result = r;
    if (textState.layer >= r.stacks.length) textState.layer = 0;
    if (!textState.shown || textState.shown.some((h) => h >= r.H) || textState.H !== r.H) textState.shown = [...Array(r.H).keys()];
    textState.H = r.H;
    views.text = { path: req.path, body: req.body, container: $('#results-text'), name: 'attention' };
    renderText();
  } catch (err) {
    if (err.name === 'AbortError') return;
    textErrors.show(err);
  }
}

function renderText() {
  const r = textState.result;
  if (!r) return;
  const L = r.stacks.length;
  const multi = L > 1;
  $('#layerpick-text').hidden = !multi;
  $('#sub-layers').disabled = !multi;
  if (!multi && textState.sub === 'sub-layers') textTabs.select('sub-heads');
  if (T.layer.options.length !== L) {
    T.layer.innerHTML = r.stacks.map((_, l) => `<option value="${l}">${l}</option>`).join('');
  }
  T.layer.value = String(textState.layer);
  const stack = r.stacks[textState.layer];
  const n = r.tokens.length;
  const elapsed = r.meta?.elapsed_ms;
  T.summary.textContent = `${n} token${n === 1 ? '' : 's'} · ${r.H} head${r.H === 1 ? '' : 's'}` +
    (multi ? ` · ${L} layers (showing layer ${textState.layer})` : '') +
    (typeof elapsed === 'number' ? ` · engine ${elapsed < 1 ? elapsed.toFixed(3) : elapsed.toFixed(1)} ms` : '') + ` · round trip ${r.roundTripMs.toFixed(0)} ms`;

  const label = (h) => (multi ? `layer ${textState.layer} · head ${h}` : `head ${h}`) +
    (r.kv && r.hkv !== r.H ? ` (kv ${r.kv(h)})` : '');
  const heads = $('#view-heads');
  const hm = heatmaps(stack.map((w, h) => ({ title: label(h), w, rows: r.tokens, cols: r.tokens })),
    { maxWidth: roomFor(heads), label: 'attention weights per head' });
  interactHeatmaps(hm, ctx);
  heads.replaceChildren(hm.svg);

  const layers = $('#view-layers');
  if (multi) {
    const mats = [];
    r.stacks.forEach((st, l) => st.forEach((w, h) => mats.push({ title: `L${l} · H${h}`, w, rows: r.tokens, cols: r.tokens, l, h })));
    const grid = heatmaps(mats, { labels: false, perRow: r.H, cell: Math.max(4, Math.min(14, Math.floor(110 / n))), label: 'weights per layer and head' });
    interactHeatmaps(grid, {
      ...ctx,
      onPick: (k) => {
        textState.layer = mats[k].l;
        textState.shown = [mats[k].h];
        textTabs.select('sub-headview');
      },
    });
    layers.replaceChildren(hintP('Pick a head (click or Enter) to open it in the head view.'), grid.svg);
  } else {
    layers.replaceChildren();
  }

  const hv = $('#view-headview');
  const picks = document.createElement('fieldset');
  picks.className = 'headpicks';
  picks.innerHTML = '<legend>Heads shown</legend>' + stack.map((_, h) =>
    `<label class="check"><input type="checkbox" value="${h}" ${textState.shown.includes(h) ? 'checked' : ''}>` +
    `<span class="swatch" data-h="${h}"></span>head ${h}</label>`).join('') +
    '<button type="button" data-all="1">all</button><button type="button" data-all="0">none</button>';
  for (const sw of $$('.swatch', picks)) sw.style.background = headColour(+sw.dataset.h);
  picks.addEventListener('change', (ev) => {
    textState.shown = $$('input:checked', picks).map((i) => +i.value);
    renderText();
    $(`#view-headview input[value="${ev.target.value}"]`)?.focus();
  });
  picks.addEventListener('click', (ev) => {
    const all = ev.target.closest('button')?.dataset.all;
    if (all === undefined) return;
    textState.shown = all === '1' ? stack.map((_, h) => h) : [];
    renderText();
  });
  const view = headView(stack, r.tokens, r.tokens, textState.shown, {
    label: 'head view: lines from each query to the keys it attends to',
    title: multi ? `layer ${textState.layer}` : '',
  });
  hv.replaceChildren(picks, hintP('Hover or focus a token to see only its lines; beside the keys: the mean weight of the heads shown.'), view);
}

function hintP(text) {
  const p = document.createElement('p');
  p.className = 'help';
  p.textContent = text;
  return p;
}

const textTabs = tabs($('#subtabs-text'), (b) => {
  textState.sub = b.id;
  if (b.id === 'sub-headview' || b.id === 'sub-layers') renderText();
});

function engineChanged() {
  const e = T.engine.value;
  const model = e.startsWith('model:');
  for (const el of $$('.mha-only')) el.hidden = e !== 'mha';
  for (const el of $$('.encoder-only')) el.hidden = e !== 'encoder';
  // a model brings its own tokenizer, embeddings, heads and layers
  for (const id of ['#grp-embed', '#grp-heads', '#grp-masks', '#grp-kernel']) $(id).disabled = $(id).hidden = model;
  $('#sentence-help').textContent = model
    ? `The model's own tokenizer splits the text; its real attention comes back for every layer and head.`
    : 'Split into words and punctuation; each token gets a seeded embedding (see “How the page computes”).';
}

let typing = 0;
function scheduleText() {
  if (!T.auto.checked) return;
  clearTimeout(typing);
  typing = setTimeout(runText, 200);
}

function setupText() {
  T.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    runText();
  });
  T.form.addEventListener('input', (ev) => {
    if (ev.target !== T.auto) scheduleText();
  });
  T.engine.addEventListener('change', () => {
    clearTimeout(typing);
    engineChanged();
    textState.layer = 0;
    runText();
  });
  T.layer.addEventListener('change', () => {
    textState.layer = +T.layer.value;
    renderText();
  });
  engineChanged();
}

// ------------------------------------------------------------------ models (when the service has them)

/** Offers the service's pretrained text models, if it has any; silent when it has none. */
async function discoverModels(info) {
  if (Array.isArray(info?.models) && info.models.length === 0) return;
  let list;
  try {
    list = await get('/v1/models');
  } catch (err) {
    if (err instanceof ApiError) return; // 404 on services without models
    throw err;
  }
  const group = document.createElement('optgroup');
  group.label = 'Pretrained models';
  for (const m of list?.models ?? []) {
    if (!m || typeof m.name !== 'string' || /vit/i.test(m.architecture ?? '')) continue;
    models.set(m.name, m);
    const o = document.createElement('option');
    o.value = 'model:' + m.name;
    const layers = m.layers ?? m.num_layers, heads = m.heads ?? m.num_heads;
    o.textContent = `${m.name} (${[m.architecture, layers && `${layers} layers`, heads && `${heads} heads`].filter(Boolean).join(', ')})`;
    group.append(o);
  }
  if (!group.children.length) return;
  T.engine.append(group);
  // A service that serves a model is there to show it: the page starts on its first one.
  T.engine.value = group.children[0].value;
  engineChanged();
}

// ------------------------------------------------------------------ Q / K / V

const Q = {
  form: $('#form-qkv'),
  json: $('#qkv-json'),
  score: $('#qkv-score'),
  scale: $('#qkv-scale'),
  softcap: $('#qkv-softcap'),
  causal: $('#qkv-causal'),
  window: $('#qkv-window'),
  block: $('#qkv-block'),
  global: $('#qkv-global'),
  kernel: $('#qkv-kernel'),
  summary: $('#summary-qkv'),
};
const qkvErrors = new ErrorSlots($('#panel-qkv'), {
  '/json': 'err-qkv-json', '/query': 'err-qkv-json', '/key': 'err-qkv-json', '/value': 'err-qkv-json',
  '/tokens': 'err-qkv-json', '/key_tokens': 'err-qkv-json', '/mask': 'err-qkv-json', '/key_padding_mask': 'err-qkv-json',
  '/attn_bias': 'err-qkv-json', '/w': 'err-qkv-json', '/v': 'err-qkv-json', '/w1': 'err-qkv-json', '/w2': 'err-qkv-json',
  '/positional': 'err-qkv-json', '/score': 'err-qkv-score', '/scale': 'err-qkv-scale', '/softcap': 'err-qkv-softcap',
  '/causal': 'err-qkv-causal', '/pattern': 'err-qkv-pattern', '/kernel': 'err-qkv-kernel',
}, 'err-qkv');
const qkvSignal = latest();
const QKV_EXAMPLE = {
  query: [[1, 0, 0.5, 0], [0, 2, 0, 1], [0.5, 1, 2, 0], [0, 1, 0.5, 2]],
  key: [[1, 0, 0.5, 0], [0, 2, 0, 1], [0.5, 1, 2, 0], [0, 1, 0.5, 2]],
  value: [[1, 0], [0, 1], [1, 1], [0.5, 0.5]],
  tokens: ['the', 'cat', 'sat', 'down'],
};
/** One member per line, each matrix on one line. */
const compactJson = (o) => '{\n' + Object.entries(o).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n') + '\n}';

function qkvRequest() {
  let body;
  try {
    body = JSON.parse(Q.json.value);
  } catch (err) {
    throw new InputError('/json', 'not JSON: ' + err.message);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new InputError('/json', 'expected an object {"query": ..., "key": ..., "value": ...}');
  body = { ...body };
  if (Q.score.value !== 'scaled_dot' || body.score) body.score = body.score ?? Q.score.value;
  const scale = numOf(Q.scale);
  if (scale !== undefined) body.scale = scale;
  const softcap = numOf(Q.softcap);
  if (softcap !== undefined) body.softcap = softcap;
  if (Q.causal.value) body.causal = Q.causal.value === 'top_left' ? true : 'bottom_right';
  const pattern = { ...(body.pattern ?? {}) };
  const w = intOf(Q.window);
  if (w !== undefined) pattern.window = w;
  const b = intOf(Q.block);
  if (b !== undefined) pattern.block_size = b;
  const g = indexList(Q.global);
  if (g === null) throw new InputError('/pattern/global_tokens', 'list token indices, e.g. 0');
  if (g) pattern.global_tokens = g;
  if (Object.keys(pattern).length) body.pattern = pattern;
  const kernel = kernelOf(Q.kernel.value);
  if (kernel) body.kernel = kernel;
  body.return = ['weights'];
  return { path: '/v1/attention', body };
}

async function runQkv() {
  qkvErrors.clear();
  let req;
  try {
    req = qkvRequest();
  } catch (err) {
    qkvErrors.show(err);
    return;
  }
  const t0 = nowMs();
  try {
    const ans = await post(req.path, req.body, { signal: qkvSignal() });
    const w = ans.weights;
    const batched = Array.isArray(w[0]?.[0]);
    const mats = batched ? w : [w];
    const n = mats[0].length, m = mats[0][0].length;
    const rows = ans.tokens ?? Array.from({ length: n }, (_, i) => `q${i}`);
    const cols = ans.key_tokens ?? (n === m && ans.tokens ? ans.tokens : Array.from({ length: m }, (_, j) => `k${j}`));
    const view = $('#view-qkv');
    const hm = heatmaps(mats.map((x, b) => ({ title: batched ? `batch ${b}` : 'weights', w: x, rows, cols })),
      { maxWidth: roomFor(view), label: 'attention weights' });
    interactHeatmaps(hm, ctx);
    const hv = headView(mats, rows, cols, batched ? [0] : [0], { label: 'head view', title: batched ? 'batch 0' : '' });
    view.replaceChildren(hm.svg, hv);
    Q.summary.textContent = `${n} × ${m} weights · score ${ans.meta?.score ?? req.body.score ?? 'scaled_dot'}` +
      (ans.meta?.scale !== undefined && ans.meta.scale !== null ? ` · scale ${ans.meta.scale}` : '') +
      ` · round trip ${(nowMs() - t0).toFixed(0)} ms`;
    views.qkv = { path: req.path, body: req.body, container: view, name: 'attention-qkv' };
  } catch (err) {
    if (err.name !== 'AbortError') qkvErrors.show(err);
  }
}

function setupQkv() {
  Q.json.value = compactJson(QKV_EXAMPLE);
  Q.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    runQkv();
  });
  $('#qkv-example').addEventListener('click', () => {
    Q.json.value = compactJson(QKV_EXAMPLE);
    runQkv();
  });
}

// ------------------------------------------------------------------ compare

const CMP_FIELDS = [
  ['heads', 'Heads', 'number', '4'], ['kv', 'Key/value heads', 'number', ''], ['seed', 'Weight seed', 'number', '0'],
  ['causal', 'Causal', 'select', ''], ['window', 'Window', 'number', ''], ['kernel', 'Kernel', 'select', 'softmax'],
  ['positional', 'Positions', 'select', 'sinusoidal'],
];
const CMP_OPTIONS = {
  causal: [['', 'no'], ['top_left', 'yes (top-left)'], ['bottom_right', 'yes (bottom-right)']],
  kernel: [['softmax', 'softmax'], ['elu', 'linear, elu + 1'], ['favor', 'linear, FAVOR+']],
  positional: [['sinusoidal', 'sinusoidal (added)'], ['', 'none'], ['rope', 'RoPE'], ['alibi', 'ALiBi']],
};
const cmpSignal = latest();

function buildCompareSide(side, defaults) {
  const fs = $(`#cmp-${side}`);
  for (const [key, label, type, def] of CMP_FIELDS) {
    const id = `cmp-${side}-${key}`;
    const errId = `err-${id}`;
    const value = defaults[key] ?? def;
    const control = type === 'select'
      ? `<select id="${id}" aria-describedby="${errId}">${CMP_OPTIONS[key].map(([v, t]) => `<option value="${v}"${v === value ? ' selected' : ''}>${esc(t)}</option>`).join('')}</select>`
      : `<input id="${id}" type="number" min="0" value="${esc(value)}" placeholder="${key === 'kv' ? '= heads' : key === 'window' ? 'off' : ''}" aria-describedby="${errId}">`;
    fs.insertAdjacentHTML('beforeend', `<div class="field"><label for="${id}">${esc(label)}</label>${control}<p class="error" id="${errId}" role="alert"></p></div>`);
  }
  fs.insertAdjacentHTML('beforeend', `<p class="error span" id="err-cmp-${side}" role="alert"></p>`);
}

function compareRequest(side, tokens, x) {
  const el = (k) => $(`#cmp-${side}-${k}`);
  const body = { query: x, num_heads: intOf(el('heads')) ?? 1, seed: intOf(el('seed')) ?? 0, tokens, return: ['weights'] };
  const kv = intOf(el('kv'));
  if (kv !== undefined) body.num_kv_heads = kv;
  Object.assign(body, attentionOptions(tokens, { causal: el('causal'), window: el('window'), positional: el('positional') }));
  const kernel = kernelOf(el('kernel').value);
  if (kernel) body.kernel = kernel;
  return body;
}

function sideErrors(side) {
  const map = { '/query': 'err-cmp-sentence', '/tokens': 'err-cmp-sentence' };
  for (const [k, f] of [['heads', '/num_heads'], ['kv', '/num_kv_heads'], ['seed', '/seed'], ['causal', '/causal'],
    ['window', '/pattern'], ['kernel', '/kernel'], ['positional', '/positional']]) map[f] = `err-cmp-${side}-${k}`;
  return new ErrorSlots($('#panel-compare'), map, `err-cmp-${side}`);
}

async function runCompare() {
  const errsA = sideErrors('a'), errsB = sideErrors('b');
  errsA.clear();
  const tokens = tokenize($('#cmp-sentence').value);
  const view = $('#view-compare');
  if (tokens.length === 0) {
    errsA.show(new InputError('/query', 'type at least one word'));
    return;
  }
  const x = embedTokens(tokens, intOf(T.dim) || 16, intOf(T.embSeed) ?? 0, numOf(T.embScale) ?? 3);
  let bodies;
  try {
    bodies = [compareRequest('a', tokens, x), compareRequest('b', tokens, x)];
  } catch (err) {
    errsA.show(err);
    return;
  }
  const signal = cmpSignal();
  const results = await Promise.allSettled(bodies.map((b) => post('/v1/multihead_attention', b, { signal })));
  if (results.some((r) => r.status === 'rejected' && r.reason?.name === 'AbortError')) return;
  const bad = results.findIndex((r) => r.status === 'rejected');
  if (bad >= 0) {
    (bad === 0 ? errsA : errsB).show(results[bad].reason);
    return;
  }
  const [A, B] = results.map((r) => r.value.weights);
  const maxWidth = roomFor(view);
  // A and B side by side, each in half the width (their heads wrap within it)
  const half = Math.max(300, maxWidth / 2 - 16);
  const pa = heatmaps(A.map((w, h) => ({ title: `A · head ${h}`, w, rows: tokens, cols: tokens })), { maxWidth: half, legend: false, label: 'configuration A' });
  const pb = heatmaps(B.map((w, h) => ({ title: `B · head ${h}`, w, rows: tokens, cols: tokens })), { maxWidth: half, legend: false, label: 'configuration B' });
  const mean = (S) => S[0].map((row, i) => row.map((_, j) => S.reduce((s, W) => s + W[i][j], 0) / S.length));
  const ma = mean(A), mb = mean(B);
  const diff = ma.map((row, i) => row.map((v, j) => mb[i][j] - v));
  const pd = heatmaps([
    { title: 'A · mean of heads', w: ma, rows: tokens, cols: tokens },
    { title: 'B · mean of heads', w: mb, rows: tokens, cols: tokens },
  ], { maxWidth, label: 'head means' });
  const pdd = heatmaps([{ title: 'B − A (means)', w: diff, rows: tokens, cols: tokens }],
    { colour: diverging, legendTitle: 'difference', label: 'difference of the means' });
  for (const p of [pa, pb, pd, pdd]) interactHeatmaps(p, ctx);
  const pair = document.createElement('div');
  pair.className = 'side';
  pair.append(pa.svg, pb.svg);
  const means = document.createElement('div');
  means.className = 'side';
  means.append(pd.svg, pdd.svg);
  view.replaceChildren(pair, means);
  let l1 = 0;
  for (const row of diff) for (const v of row) l1 = Math.max(l1, Math.abs(v));
  $('#summary-compare').textContent = `${tokens.length} tokens · A: ${A.length} heads, B: ${B.length} heads · largest difference of the means ${l1.toFixed(3)}`;
  views.compare = {
    requests: bodies.map((body, i) => ({ path: '/v1/multihead_attention', body, label: `configuration ${'AB'[i]}` })),
    container: view,
    name: 'attention-compare',
  };
}

function setupCompare() {
  buildCompareSide('a', {});
  buildCompareSide('b', { causal: 'top_left' });
  $('#form-compare').addEventListener('submit', (ev) => {
    ev.preventDefault();
    runCompare();
  });
}

// ------------------------------------------------------------------ start

async function start() {
  downloadButtons(curlDialog());
  const main = tabs($('#tabs'), (b) => {
    tooltip.hidden = true;
    history.replaceState(null, '', '#' + b.id.replace(/^tab-/, ''));
    onTab[b.id]?.();
  });
  setupText();
  setupQkv();
  setupCompare();
  const apps = setupApps(ctx);
  const ran = new Set();
  const once = (id, fn) => () => {
    if (!ran.has(id)) {
      ran.add(id);
      fn();
    }
  };
  const onTab = {
    'tab-qkv': once('qkv', runQkv),
    'tab-compare': once('compare', runCompare),
    'tab-translation': once('translation', apps.translation),
    'tab-image': once('image', apps.image),
    'tab-audio': once('audio', apps.audio),
    'tab-t2i': once('t2i', apps.t2i),
  };
  const status = $('#server-status');
  let info = null;
  try {
    info = await get('/v1/info');
    status.textContent = `attention-server ${info.version} · ${info.server?.threads ?? '?'} threads`;
  } catch (err) {
    status.textContent = `service not reachable: ${err.message}`;
    status.classList.add('bad');
  }
  await discoverModels(info).catch(() => {});
  await runText();
  const hash = location.hash.slice(1);
  if (hash && document.getElementById('tab-' + hash)) main.select('tab-' + hash);
  document.body.dataset.ready = '1';
}

start();
