// apps.js - the application views: translation alignment, image patches, audio frames and
// text-to-image, each the API's self- or cross-attention over vectors the page computes.

import { post } from './api.js';
import { esc, fmt, headView, heatmaps, interactHeatmaps, svgElement } from './draw.js';
import {
  AUDIO_RATE, captionFeatures, drawGeneratedImage, embedGloss, frameFeatures, patchFeatures, synthSignal, tokenize,
} from './embed.js';
import { $, ErrorSlots, InputError, intOf, latest, numOf, roomFor, views } from './ui.js';

const ACCENT = '#d62839';
const IMG = 128; // the side of the picture the patches are cut from, in pixels

/** Tooltips for elements with data-tip in an SVG; onPick(el) on click. */
function tips(svg, tooltip, onPick) {
  svg.addEventListener('mouseover', (ev) => {
    const el = ev.target.closest('[data-tip]');
    if (!el) return;
    tooltip.textContent = el.dataset.tip;
    tooltip.hidden = false;
    const r = el.getBoundingClientRect();
    tooltip.style.left = `${Math.min(window.innerWidth - 200, r.right + 10) + window.scrollX}px`;
    tooltip.style.top = `${r.top + window.scrollY - 4}px`;
  });
  svg.addEventListener('mouseleave', () => (tooltip.hidden = true));
  if (onPick) {
    svg.addEventListener('click', (ev) => {
      const el = ev.target.closest('[data-pick]');
      if (el) onPick(+el.dataset.pick);
    });
  }
}

/** Largest value of an array. */
const maxOf = (a) => a.reduce((m, v) => (v > m ? v : m), 0);

/** A picture's pixels: a generated scene, or an uploaded image scaled to cover IMG x IMG. */
async function pictureOf(kind, file) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = IMG;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  if (file) {
    const bmp = await createImageBitmap(file);
    const s = Math.max(IMG / bmp.width, IMG / bmp.height);
    const w = bmp.width * s, h = bmp.height * s;
    g.drawImage(bmp, (IMG - w) / 2, (IMG - h) / 2, w, h);
    bmp.close();
  } else {
    drawGeneratedImage(g, kind, IMG);
  }
  return { pixels: g.getImageData(0, 0, IMG, IMG).data, url: canvas.toDataURL('image/png') };
}

/**
 * An image with its patches darkened by 1 - w / max(w) (what a patch attends to stays bright),
 * at (x, y) with side D; sel outlines one patch. Markup.
 */
function overlay(url, grid, weights, x, y, D, { sel = -1, labels = [], from = '' } = {}) {
  const c = D / grid;
  const top = Math.max(1e-12, maxOf(weights));
  let out = `<image href="${url}" x="${x}" y="${y}" width="${D}" height="${D}" preserveAspectRatio="none"/>`;
  weights.forEach((w, p) => {
    const r = Math.floor(p / grid), col = p % grid;
    const o = (1 - w / top) * 0.78;
    out += `<rect data-pick="${p}" data-w="${w}" data-tip="${esc(`${from}${labels[p] ?? p}: ${fmt(w)}`)}" x="${(x + col * c).toFixed(2)}" y="${(y + r * c).toFixed(2)}" ` +
      `width="${c.toFixed(2)}" height="${c.toFixed(2)}" fill="#000" fill-opacity="${o.toFixed(3)}" stroke="#fff" stroke-opacity="0.15" stroke-width="0.5"/>`;
  });
  if (sel >= 0) {
    const r = Math.floor(sel / grid), col = sel % grid;
    out += `<rect x="${(x + col * c).toFixed(2)}" y="${(y + r * c).toFixed(2)}" width="${c.toFixed(2)}" height="${c.toFixed(2)}" fill="none" stroke="${ACCENT}" stroke-width="3" pointer-events="none"/>`;
  }
  return out;
}

export function setupApps(ctx) {
  const { tooltip, announce } = ctx;

  // ---------------------------------------------------------------- translation
  const trErrors = new ErrorSlots($('#panel-translation'), {
    '/query': 'err-tr-target', '/tokens': 'err-tr-target', '/key': 'err-tr-source', '/value': 'err-tr-source',
    '/key_tokens': 'err-tr-source', '/scale': 'err-tr-scale', '/num_heads': 'err-tr-heads',
  }, 'err-translation');
  const trSignal = latest();

  async function translation() {
    trErrors.clear();
    const src = tokenize($('#tr-source').value);
    const tgt = tokenize($('#tr-target').value);
    try {
      if (!src.length) throw new InputError('/key', 'type the source sentence');
      if (!tgt.length) throw new InputError('/query', 'type the target sentence');
    } catch (err) {
      trErrors.show(err);
      return;
    }
    const E = 16;
    const k = embedGloss(src, E, 0, 1);
    const q = embedGloss(tgt, E, 0, 1);
    const mha = $('#tr-mode').value === 'mha';
    const scale = numOf($('#tr-scale'));
    const body = mha
      ? { query: q, key: k, value: k, num_heads: intOf($('#tr-heads')) ?? 2, seed: 0, tokens: tgt, key_tokens: src, return: ['weights'] }
      : { query: q, key: k, value: k, tokens: tgt, key_tokens: src, return: ['weights'] };
    if (scale !== undefined) body.scale = scale;
    const path = mha ? '/v1/multihead_attention' : '/v1/attention';
    let ans;
    try {
      ans = await post(path, body, { signal: trSignal() });
    } catch (err) {
      if (err.name !== 'AbortError') trErrors.show(err);
      return;
    }
    const stack = mha ? ans.weights : [ans.weights];
    const view = $('#view-translation');
    const hm = heatmaps(stack.map((w, h) => ({ title: mha ? `cross-attention · head ${h}` : 'cross-attention', w, rows: tgt, cols: src })),
      { maxWidth: roomFor(view), label: 'target by source weights' });
    interactHeatmaps(hm, ctx);
    const hv = headView(stack, tgt, src, stack.map((_, h) => h), { label: 'alignment lines', title: 'alignment: target (left) to source (right)' });
    view.replaceChildren(hm.svg, hv);
    const mean = stack[0].map((row, i) => row.map((_, j) => stack.reduce((s, W) => s + W[i][j], 0) / stack.length));
    const pairs = mean.map((row, i) => `${tgt[i]}→${src[row.indexOf(maxOf(row))]}`);
    $('#summary-translation').textContent = `Strongest source word per target word: ${pairs.join(', ')}`;
    views.translation = { path, body, container: view, name: 'attention-translation' };
  }
  const trMode = () => ($('#tr-heads').closest('.field').hidden = $('#tr-mode').value !== 'mha');
  $('#tr-mode').addEventListener('change', () => {
    trMode();
    translation();
  });
  trMode();
  $('#form-translation').addEventListener('submit', (ev) => {
    ev.preventDefault();
    translation();
  });

  // ---------------------------------------------------------------- image patches
  const imErrors = new ErrorSlots($('#panel-image'), {
    '/grid': 'err-img-patch', '/scale': 'err-img-scale', '/query': 'err-image', '/tokens': 'err-image',
  }, 'err-image');
  const imSignal = latest();
  const im = { url: '', grid: 8, labels: [], W: null, sel: 0, file: null, body: null, path: '' };

  function renderImage() {
    const view = $('#view-image');
    const D = 320;
    const P = im.grid * im.grid;
    const row = im.W[im.sel];
    let inner = `<text x="0" y="14" font-size="13" font-weight="600" fill="#1d2433">${esc(`patch ${im.labels[im.sel]} attends to`)}</text>`;
    inner += `<g data-role="patches" tabindex="0" aria-label="${esc(`${im.grid} by ${im.grid} patches; arrow keys pick the patch`)}" transform="translate(0,24)">` +
      overlay(im.url, im.grid, row, 0, 0, D, { sel: im.sel, labels: im.labels, from: `${im.labels[im.sel]} → ` }) + '</g>';
    const svg = svgElement(D + 2, D + 26, inner, 'image patches with the attention of the chosen patch');
    tips(svg, tooltip, (p) => {
      im.sel = p;
      renderImage();
      $('#view-image g[data-role="patches"]')?.focus();
    });
    svg.addEventListener('keydown', (ev) => {
      const g = im.grid;
      let r = Math.floor(im.sel / g), c = im.sel % g;
      if (ev.key === 'ArrowUp') r = Math.max(0, r - 1);
      else if (ev.key === 'ArrowDown') r = Math.min(g - 1, r + 1);
      else if (ev.key === 'ArrowLeft') c = Math.max(0, c - 1);
      else if (ev.key === 'ArrowRight') c = Math.min(g - 1, c + 1);
      else return;
      ev.preventDefault();
      im.sel = r * g + c;
      renderImage();
      $('#view-image g[data-role="patches"]')?.focus();
      announce.textContent = `patch ${im.labels[im.sel]}; strongest: ${im.labels[im.W[im.sel].indexOf(maxOf(im.W[im.sel]))]}`;
    });
    const hm = heatmaps([{ title: `all ${P} × ${P} patch pairs`, w: im.W, rows: im.labels, cols: im.labels }],
      { labels: false, cell: Math.max(2, Math.min(8, Math.floor(320 / P))), label: 'patch by patch weights' });
    interactHeatmaps(hm, { ...ctx, onPick: (_, i) => { im.sel = i; renderImage(); } });
    const wrap = document.createElement('div');
    wrap.className = 'side';
    wrap.append(svg, hm.svg);
    view.replaceChildren(wrap);
  }

  async function image() {
    imErrors.clear();
    const grid = intOf($('#img-patch'));
    const scale = numOf($('#img-scale'));
    try {
      if (!(grid >= 2 && grid <= 16)) throw new InputError('/grid', 'patches per side: a whole number from 2 to 16');
    } catch (err) {
      imErrors.show(err);
      return;
    }
    const kind = $('#img-source').value;
    let pic;
    try {
      pic = await pictureOf(kind, im.file);
    } catch (err) {
      imErrors.show(new InputError('', 'cannot read that image: ' + err.message));
      return;
    }
    const { features, labels } = patchFeatures(pic.pixels, IMG, grid);
    const mha = $('#img-mode').value === 'mha';
    const body = mha
      ? { query: features, num_heads: 2, seed: 0, tokens: labels, average_weights: true, return: ['weights_avg'] }
      : { query: features, key: features, value: features, tokens: labels, return: ['weights'] };
    if (scale !== undefined) body.scale = scale;
    const path = mha ? '/v1/multihead_attention' : '/v1/attention';
    let ans;
    try {
      ans = await post(path, body, { signal: imSignal() });
    } catch (err) {
      if (err.name !== 'AbortError') imErrors.show(err);
      return;
    }
    const firstRun = im.W === null || im.grid !== grid;
    Object.assign(im, { url: pic.url, grid, labels, W: mha ? ans.weights_avg : ans.weights, body, path });
    // first a patch of sky in the scene (it attends to the rest of the sky), else the first
    if (firstRun) im.sel = kind === 'scene' && !im.file ? Math.floor(grid / 8) * grid + Math.floor(grid / 4) : 0;
    renderImage();
    $('#summary-image').textContent = `${grid * grid} patches of ${(IMG / grid).toFixed(0)} × ${(IMG / grid).toFixed(0)} px, ` +
      `10 features each (colour, brightness, texture, place) · ${mha ? 'mean of 2 seeded heads' : 'one head on the features'}`;
    views.image = { path, body, container: $('#view-image'), name: 'attention-image' };
  }
  $('#form-image').addEventListener('submit', (ev) => {
    ev.preventDefault();
    image();
  });
  $('#img-file').addEventListener('change', (ev) => {
    im.file = ev.target.files?.[0] ?? null;
    im.W = null;
    image();
  });
  $('#img-source').addEventListener('change', () => {
    im.file = null;
    $('#img-file').value = '';
    im.W = null;
    image();
  });

  // ---------------------------------------------------------------- audio frames
  const auErrors = new ErrorSlots($('#panel-audio'), {
    '/frames': 'err-au-frames', '/scale': 'err-au-scale', '/positional': 'err-audio', '/query': 'err-audio',
  }, 'err-audio');
  const auSignal = latest();
  const au = { x: null, F: 0, labels: [], W: null, sel: 0 };

  function renderAudio() {
    const view = $('#view-audio');
    const Wd = 640, Hw = 110, Hb = 60;
    const { x, F, W, sel } = au;
    const len = Math.floor(x.length / F);
    const fw = Wd / F;
    const row = W[sel];
    const top = Math.max(1e-12, maxOf(row));
    let inner = `<text x="0" y="14" font-size="13" font-weight="600" fill="#1d2433">${esc(`frame ${sel} (${au.labels[sel]}) attends to`)}</text>`;
    inner += '<g transform="translate(16,24)" data-role="frames" tabindex="0" aria-label="frames; arrow keys pick the frame">';
    row.forEach((w, f) => {
      inner += `<rect data-pick="${f}" data-w="${w}" data-tip="${esc(`frame ${sel} → frame ${f} (${au.labels[f]}): ${fmt(w)}`)}" x="${(f * fw).toFixed(2)}" y="0" width="${fw.toFixed(2)}" height="${Hw}" ` +
        `fill="${ACCENT}" fill-opacity="${((0.55 * w) / top).toFixed(3)}"/>`;
    });
    let d = '';
    const step = x.length / Wd;
    for (let px = 0; px < Wd; px++) {
      let lo = 1, hi = -1;
      for (let i = Math.floor(px * step); i < Math.floor((px + 1) * step); i++) {
        lo = Math.min(lo, x[i]);
        hi = Math.max(hi, x[i]);
      }
      d += `M${px + 0.5} ${(Hw / 2 - hi * (Hw / 2 - 4)).toFixed(1)}V${(Hw / 2 - lo * (Hw / 2 - 4)).toFixed(1)}`;
    }
    inner += `<path d="${d}" stroke="#1d2433" stroke-width="1" fill="none" pointer-events="none"/>`;
    inner += `<rect x="${(sel * fw).toFixed(2)}" y="0" width="${fw.toFixed(2)}" height="${Hw}" fill="none" stroke="${ACCENT}" stroke-width="2" pointer-events="none"/>`;
    row.forEach((w, f) => {
      const h = (Hb * w) / top;
      inner += `<rect data-pick="${f}" data-tip="${esc(`frame ${sel} → frame ${f}: ${fmt(w)}`)}" x="${(f * fw + 1).toFixed(2)}" y="${(Hw + 8 + Hb - h).toFixed(2)}" width="${Math.max(1, fw - 2).toFixed(2)}" height="${h.toFixed(2)}" fill="#3a6ea5"/>`;
    });
    for (let f = 0; f <= F; f += Math.max(1, Math.round(F / 8))) {
      inner += `<text x="${(f * fw).toFixed(1)}" y="${Hw + Hb + 24}" font-size="10" fill="#5b6475" text-anchor="middle">${((f * len) / AUDIO_RATE).toFixed(2)}s</text>`;
    }
    inner += '</g>';
    const svg = svgElement(Wd + 40, Hw + Hb + 56, inner, 'waveform with the attention of the chosen frame');
    const pick = (f) => {
      au.sel = f;
      renderAudio();
      $('#view-audio g[data-role="frames"]')?.focus();
    };
    tips(svg, tooltip, pick);
    svg.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
      ev.preventDefault();
      pick(Math.min(F - 1, Math.max(0, au.sel + (ev.key === 'ArrowRight' ? 1 : -1))));
      announce.textContent = `frame ${au.sel}`;
    });
    const hm = heatmaps([{ title: 'frame × frame (queries down, keys across)', w: W, rows: au.labels, cols: au.labels }],
      { cell: Math.max(4, Math.min(12, Math.floor(400 / F))), label: 'frame by frame weights' });
    interactHeatmaps(hm, { ...ctx, onPick: (_, i) => pick(i) });
    view.replaceChildren(svg, hm.svg);
  }

  async function audio() {
    auErrors.clear();
    const F = intOf($('#au-frames'));
    try {
      if (!(F >= 4 && F <= 128)) throw new InputError('/frames', 'frames: a whole number from 4 to 128');
    } catch (err) {
      auErrors.show(err);
      return;
    }
    const x = synthSignal($('#au-signal').value);
    const { features, labels } = frameFeatures(x, F);
    const body = { query: features, key: features, value: features, tokens: labels, return: ['weights'] };
    const scale = numOf($('#au-scale'));
    if (scale !== undefined) body.scale = scale;
    const pos = $('#au-positional').value;
    // ALiBi's default slope for one head is tiny (BLOOM's 2^-8); a steeper one shows the decay
    if (pos) body.positional = pos === 'alibi' ? { type: 'alibi', slopes: [0.25] } : { type: pos };
    let ans;
    try {
      ans = await post('/v1/attention', body, { signal: auSignal() });
    } catch (err) {
      if (err.name !== 'AbortError') auErrors.show(err);
      return;
    }
    Object.assign(au, { x, F, labels, W: ans.weights, sel: Math.min(au.sel, F - 1) });
    renderAudio();
    $('#summary-audio').textContent = `1 s at ${AUDIO_RATE} Hz in ${F} frames of ${(1000 / F).toFixed(1)} ms · 10 features per frame` +
      (pos ? ` · positions: ${pos}` : '');
    views.audio = { path: '/v1/attention', body, container: $('#view-audio'), name: 'attention-audio' };
  }
  $('#form-audio').addEventListener('submit', (ev) => {
    ev.preventDefault();
    audio();
  });

  // ---------------------------------------------------------------- text to image
  const tiErrors = new ErrorSlots($('#panel-t2i'), {
    '/query': 'err-t2i-caption', '/tokens': 'err-t2i-caption', '/scale': 'err-t2i-scale',
  }, 'err-t2i');
  const tiSignal = latest();

  async function t2i() {
    tiErrors.clear();
    const tokens = tokenize($('#t2i-caption').value);
    if (!tokens.length) {
      tiErrors.show(new InputError('/query', 'type a caption'));
      return;
    }
    const grid = 8;
    const pic = await pictureOf($('#t2i-source').value, null);
    const { features, labels } = patchFeatures(pic.pixels, IMG, grid);
    const body = { query: captionFeatures(tokens), key: features, value: features, tokens, key_tokens: labels, return: ['weights'] };
    const scale = numOf($('#t2i-scale'));
    if (scale !== undefined) body.scale = scale;
    let ans;
    try {
      ans = await post('/v1/attention', body, { signal: tiSignal() });
    } catch (err) {
      if (err.name !== 'AbortError') tiErrors.show(err);
      return;
    }
    const view = $('#view-t2i');
    const D = 132, gap = 14, labelH = 22;
    const perRow = Math.max(1, Math.floor((roomFor(view) + gap) / (D + gap)));
    const rows = Math.ceil(tokens.length / perRow);
    let inner = '';
    tokens.forEach((t, i) => {
      const x = (i % perRow) * (D + gap), y = Math.floor(i / perRow) * (D + labelH + gap);
      inner += `<g data-token="${i}">` + overlay(pic.url, grid, ans.weights[i], x, y, D, { labels, from: `${t} → ` }) +
        `<text x="${x + D / 2}" y="${y + D + 16}" font-size="13" text-anchor="middle" fill="#1d2433">${esc(t)}</text></g>`;
    });
    const svg = svgElement(Math.min(tokens.length, perRow) * (D + gap) - gap + 2, rows * (D + labelH + gap) - gap + 2, inner,
      'each caption word over the image: bright patches are what the word attends to');
    tips(svg, tooltip);
    view.replaceChildren(svg);
    $('#summary-t2i').textContent = `${tokens.length} words × ${grid * grid} patches · cross-attention, words as queries, patches as keys and values`;
    views.t2i = { path: '/v1/attention', body, container: view, name: 'attention-text-to-image' };
  }
  $('#form-t2i').addEventListener('submit', (ev) => {
    ev.preventDefault();
    t2i();
  });

  return { translation, image, audio, t2i };
}
