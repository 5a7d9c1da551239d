// draw.js - pictures as SVG: heatmap grids with tooltips and keyboard cursors, the head view,
// colour scales, and a view's export as an SVG or PNG file.

export const NS = 'http://www.w3.org/2000/svg';
export const FONT = 'system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif';
const INK = '#1d2433';
const MUTED = '#5b6475';
const ACCENT = '#d62839';

export const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** Numbers as the pictures print them. */
export const fmt = (w, d = 4) => (Number.isFinite(w) ? w.toFixed(d) : String(w));

// --------------------------------------------------------------------- colours

const VIRIDIS = [
  [68, 1, 84], [72, 36, 117], [65, 68, 135], [53, 95, 141], [42, 120, 142], [33, 145, 140],
  [34, 168, 132], [68, 191, 112], [122, 209, 81], [189, 223, 38], [253, 231, 37],
];

/** viridis for t in [0, 1] (clamped), as "rgb(r,g,b)". */
export function viridis(t) {
  t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t));
  const f = t - i;
  const a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${Math.round(a[0] + f * (b[0] - a[0]))},${Math.round(a[1] + f * (b[1] - a[1]))},${Math.round(a[2] + f * (b[2] - a[2]))})`;
}

/** Blue - white - red for t in [-1, 1] (differences). */
export function diverging(t) {
  t = Math.min(1, Math.max(-1, Number.isFinite(t) ? t : 0));
  const c = t < 0 ? [33, 102, 172] : [178, 24, 43];
  const f = Math.abs(t);
  return `rgb(${Math.round(255 + f * (c[0] - 255))},${Math.round(255 + f * (c[1] - 255))},${Math.round(255 + f * (c[2] - 255))})`;
}

/** Distinct colours for heads (lines of the head view, head swatches). */
export const HEAD_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
export const headColour = (h) => HEAD_COLOURS[h % HEAD_COLOURS.length];

// --------------------------------------------------------------------- text

let measureCtx = null;
/** Width of text in px at the given size, in the pictures' font. */
export function textWidth(s, size = 12) {
  measureCtx ??= document.createElement('canvas').getContext('2d');
  measureCtx.font = `${size}px ${FONT}`;
  return measureCtx.measureText(String(s)).width;
}

const shorten = (s, n = 14) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

let uid = 0;
const nextId = (p) => `${p}${++uid}`;

/** An <svg> element from inner markup (made of escaped text and attributes only). */
export function svgElement(width, height, inner, label) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('xmlns', NS);
  svg.setAttribute('width', Math.ceil(width));
  svg.setAttribute('height', Math.ceil(height));
  svg.setAttribute('viewBox', `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`);
  svg.setAttribute('font-family', FONT);
  svg.setAttribute('class', 'view-root');
  if (label) {
    svg.setAttribute('role', 'group');
    svg.setAttribute('aria-label', label);
  }
  svg.innerHTML = inner;
  return svg;
}

// --------------------------------------------------------------------- colour bar

/** A horizontal colour bar with its end values at (x, y), as markup. */
export function colourBar(x, y, width, lo, hi, colour = viridis, title = 'weight') {
  const id = nextId('grad');
  let stops = '';
  for (let i = 0; i <= 10; i++) {
    const t = i / 10;
    const v = colour === diverging ? 2 * t - 1 : t;
    stops += `<stop offset="${t}" stop-color="${colour(v)}"/>`;
  }
  return `<g data-role="legend"><defs><linearGradient id="${id}" x1="0" x2="1" y1="0" y2="0">${stops}</linearGradient></defs>` +
    `<text x="${x}" y="${y - 4}" font-size="11" fill="${MUTED}">${esc(title)}</text>` +
    `<rect x="${x}" y="${y}" width="${width}" height="10" fill="url(#${id})" stroke="#c9ced8" stroke-width="0.5"/>` +
    `<text x="${x}" y="${y + 23}" font-size="11" fill="${MUTED}">${esc(fmt(lo, 2))}</text>` +
    `<text x="${x + width}" y="${y + 23}" font-size="11" fill="${MUTED}" text-anchor="end">${esc(fmt(hi, 2))}</text></g>`;
}

// --------------------------------------------------------------------- heatmaps

/**
 * Lays out heatmaps in rows within maxWidth and returns {svg, mats}.
 * mats: [{title, w [n][m], rows [n] labels, cols [m] labels, info?}]: one heatmap each.
 * opts: cell (px, default from the size), labels (default true), maxWidth, colour (viridis |
 * diverging), lo/hi (colour range; default 0..1 for viridis, -max..max for diverging),
 * legend (default true), perRow (heatmaps per row; default: as many as fit), label (aria),
 * values (print each weight in its cell; default when cells are at least 26 px).
 * Every cell is a <rect data-k data-i data-j data-w> with the weight as the service sent it.
 */
export function heatmaps(mats, opts = {}) {
  const labels = opts.labels ?? true;
  const colour = opts.colour ?? viridis;
  const maxN = Math.max(...mats.map((m) => m.w.length));
  const maxM = Math.max(...mats.map((m) => (m.w[0] ?? []).length));
  const cell = opts.cell ?? Math.max(4, Math.min(26, Math.floor(320 / Math.max(maxN, maxM))));
  const fs = Math.min(12, Math.max(9, cell - 4));
  const showValues = opts.values ?? cell >= 26;
  let rowLabelW = 0, colLabelH = 0;
  if (labels) {
    for (const m of mats) {
      for (const r of m.rows) rowLabelW = Math.max(rowLabelW, textWidth(shorten(r), fs));
      for (const c of m.cols) colLabelH = Math.max(colLabelH, textWidth(shorten(c), fs));
    }
    rowLabelW += 8;
    colLabelH = colLabelH * Math.sin(Math.PI / 3) + 8;
  }
  const titleH = 20;
  const w1 = rowLabelW + maxM * cell;
  const h1 = titleH + colLabelH + maxN * cell;
  const gap = labels ? 20 : 12;
  const maxWidth = opts.maxWidth ?? 1100;
  const perRow = Math.max(1, opts.perRow ?? Math.floor((maxWidth + gap) / (w1 + gap)));
  const nRows = Math.ceil(mats.length / perRow);
  const legend = opts.legend ?? true;
  const legendH = legend ? 44 : 0;
  const width = Math.max(Math.min(perRow, mats.length) * (w1 + gap) - gap, legend ? 200 : 0) + 2;
  const height = nRows * (h1 + gap) - gap + legendH + 2;
  let lo = opts.lo, hi = opts.hi;
  if (lo === undefined || hi === undefined) {
    if (colour === diverging) {
      let a = 1e-9;
      for (const m of mats) for (const r of m.w) for (const v of r) if (Number.isFinite(v)) a = Math.max(a, Math.abs(v));
      lo = -a; hi = a;
    } else {
      lo = 0; hi = 1;
    }
  }
  const norm = colour === diverging ? (v) => v / hi : (v) => (v - lo) / (hi - lo || 1);

  let out = '';
  mats.forEach((m, k) => {
    const x0 = 1 + (k % perRow) * (w1 + gap);
    const y0 = 1 + Math.floor(k / perRow) * (h1 + gap);
    const gx = x0 + rowLabelW;
    const gy = y0 + titleH + colLabelH;
    const n = m.w.length, mm = (m.w[0] ?? []).length;
    out += `<g data-k="${k}" data-role="heatmap" tabindex="0" aria-roledescription="heatmap" ` +
      `aria-label="${esc(`${m.title}: ${n} by ${mm} weights; arrow keys move between cells`)}">`;
    out += `<text x="${gx}" y="${y0 + 14}" font-size="13" font-weight="600" fill="${INK}">${esc(m.title)}</text>`;
    if (labels) {
      m.cols.forEach((c, j) => {
        const cx = gx + j * cell + cell / 2 + fs / 3;
        out += `<text data-role="col" data-k="${k}" data-j="${j}" font-size="${fs}" fill="${INK}" ` +
          `transform="translate(${cx.toFixed(1)},${gy - 4}) rotate(-60)">${esc(shorten(c))}</text>`;
      });
      m.rows.forEach((r, i) => {
        out += `<text data-role="row" data-k="${k}" data-i="${i}" font-size="${fs}" fill="${INK}" text-anchor="end" ` +
          `x="${gx - 5}" y="${(gy + i * cell + cell / 2 + fs / 3).toFixed(1)}">${esc(shorten(r))}</text>`;
      });
    }
    let values = '';
    for (let i = 0; i < n; i++) {
      const row = m.w[i];
      for (let j = 0; j < mm; j++) {
        const v = row[j];
        out += `<rect data-k="${k}" data-i="${i}" data-j="${j}" data-w="${v}" x="${gx + j * cell}" y="${gy + i * cell}" ` +
          `width="${cell}" height="${cell}" fill="${v === null ? '#d0d0d0' : colour(norm(v))}"/>`;
        if (showValues && v !== null) {
          const t = norm(v);
          const light = colour === diverging ? Math.abs(t) > 0.6 : t < 0.6;
          values += `<text x="${gx + j * cell + cell / 2}" y="${gy + i * cell + cell / 2 + 3.5}" font-size="10" text-anchor="middle" ` +
            `fill="${light ? '#ffffff' : INK}">${Math.abs(v) < 0.005 ? '0' : v.toFixed(2).replace(/^(-?)0\./, '$1.')}</text>`;
        }
      }
    }
    if (values) out += `<g pointer-events="none" aria-hidden="true">${values}</g>`;
    out += `<rect x="${gx}" y="${gy}" width="${mm * cell}" height="${n * cell}" fill="none" stroke="#c9ced8" stroke-width="0.5"/>`;
    out += '</g>';
  });
  if (legend) out += colourBar(1, height - legendH + 16, 180, lo, hi, colour, opts.legendTitle ?? 'weight');
  out += `<rect data-ui="cursor" x="0" y="0" width="0" height="0" fill="none" stroke="${ACCENT}" stroke-width="2" visibility="hidden" pointer-events="none"/>`;
  const svg = svgElement(width, height, out, opts.label ?? 'attention weights');
  return { svg, mats, cell };
}

/**
 * Tooltips, label highlighting and a keyboard cursor for a heatmaps() picture.
 * tooltip: the page's tooltip element; announce: a live region; onPick(k, i, j) on click/Enter.
 */
export function interactHeatmaps({ svg, mats }, { tooltip, announce, onPick, onFocusMatrix } = {}) {
  const cursor = svg.querySelector('[data-ui="cursor"]');
  let lit = [];
  const state = { k: 0, i: 0, j: 0 };

  const unlight = () => {
    for (const el of lit) {
      el.setAttribute('fill', INK);
      el.removeAttribute('font-weight');
    }
    lit = [];
  };
  const describe = (k, i, j) => {
    const m = mats[k];
    const v = m.w[i][j];
    return { head: m.title, text: `${m.rows[i]} → ${m.cols[j]}`, weight: v === null ? 'removed' : fmt(v), info: m.info?.(i, j) ?? '' };
  };
  const show = (k, i, j, rect, fromKeyboard) => {
    unlight();
    for (const sel of [`text[data-role="row"][data-k="${k}"][data-i="${i}"]`, `text[data-role="col"][data-k="${k}"][data-j="${j}"]`]) {
      const el = svg.querySelector(sel);
      if (el) {
        el.setAttribute('fill', ACCENT);
        el.setAttribute('font-weight', '700');
        lit.push(el);
      }
    }
    for (const a of ['x', 'y', 'width', 'height']) cursor.setAttribute(a, rect.getAttribute(a));
    cursor.setAttribute('visibility', 'visible');
    const d = describe(k, i, j);
    if (tooltip) {
      tooltip.innerHTML = `<b>${esc(d.head)}</b><br>${esc(d.text)}<br><span class="tw">${esc(d.weight)}</span>${d.info ? '<br>' + esc(d.info) : ''}`;
      tooltip.hidden = false;
      const r = rect.getBoundingClientRect();
      const left = Math.min(window.innerWidth - 200, r.right + 12);
      tooltip.style.left = `${Math.max(4, left) + window.scrollX}px`;
      tooltip.style.top = `${r.top + window.scrollY - 6}px`;
    }
    if (announce && fromKeyboard) announce.textContent = `${d.head}, ${d.text}: ${d.weight}`;
    Object.assign(state, { k, i, j });
  };
  const hide = () => {
    unlight();
    cursor.setAttribute('visibility', 'hidden');
    if (tooltip) tooltip.hidden = true;
  };
  const rectAt = (k, i, j) => svg.querySelector(`rect[data-k="${k}"][data-i="${i}"][data-j="${j}"]`);

  svg.addEventListener('mouseover', (ev) => {
    const r = ev.target.closest('rect[data-w]');
    if (!r) return;
    show(+r.dataset.k, +r.dataset.i, +r.dataset.j, r, false);
  });
  svg.addEventListener('mouseleave', hide);
  svg.addEventListener('click', (ev) => {
    const r = ev.target.closest('rect[data-w]');
    if (r && onPick) onPick(+r.dataset.k, +r.dataset.i, +r.dataset.j);
  });
  svg.addEventListener('focusin', (ev) => {
    const g = ev.target.closest('g[data-role="heatmap"]');
    if (!g) return;
    const k = +g.dataset.k;
    if (k !== state.k) Object.assign(state, { k, i: 0, j: 0 });
    const r = rectAt(state.k, state.i, state.j);
    if (r) show(state.k, state.i, state.j, r, true);
    onFocusMatrix?.(k);
  });
  svg.addEventListener('focusout', hide);
  svg.addEventListener('keydown', (ev) => {
    const g = ev.target.closest('g[data-role="heatmap"]');
    if (!g) return;
    const m = mats[state.k];
    const n = m.w.length, mm = m.w[0].length;
    let { i, j } = state;
    switch (ev.key) {
      case 'ArrowUp': i = Math.max(0, i - 1); break;
      case 'ArrowDown': i = Math.min(n - 1, i + 1); break;
      case 'ArrowLeft': j = Math.max(0, j - 1); break;
      case 'ArrowRight': j = Math.min(mm - 1, j + 1); break;
      case 'Home': j = 0; break;
      case 'End': j = mm - 1; break;
      case 'Enter': case ' ': onPick?.(state.k, i, j); ev.preventDefault(); return;
      default: return;
    }
    ev.preventDefault();
    show(state.k, i, j, rectAt(state.k, i, j), true);
  });
}

// --------------------------------------------------------------------- head view

/**
 * The head view (as bertviz): queries on the left, keys on the right, a line from each query to
 * each key it attends to, the weight as the line's opacity, one colour per head. Hover or focus
 * a token to see only its lines (and the mean weight of the shown heads beside each key).
 * stack: [H][n][m]; shown: the heads to draw. Returns the <svg>.
 */
export function headView(stack, rows, cols, shown, { label = 'head view', title = '' } = {}) {
  const n = rows.length, m = cols.length;
  const fs = 13;
  const rowH = Math.max(16, Math.min(30, Math.floor(600 / Math.max(n, m))));
  const lw = Math.max(40, ...rows.map((t) => textWidth(shorten(t, 18), fs))) + 10;
  const rw = Math.max(40, ...cols.map((t) => textWidth(shorten(t, 18), fs))) + 10;
  const gap = 240;
  const top = title ? 44 : 24;
  const width = lw + gap + rw + 60;
  const height = top + Math.max(n, m) * rowH + 12;
  const xl = lw, xr = lw + gap;
  const yOf = (i) => top + i * rowH + rowH / 2;
  let out = '';
  if (title) out += `<text x="2" y="16" font-size="13" font-weight="600" fill="${INK}">${esc(title)}</text>`;
  out += `<text x="${xl}" y="${top - 8}" font-size="11" fill="${MUTED}" text-anchor="end">queries</text>`;
  out += `<text x="${xr}" y="${top - 8}" font-size="11" fill="${MUTED}">keys</text>`;
  const alpha = 1 / Math.sqrt(Math.max(1, shown.length));
  out += '<g data-role="lines">';
  for (const h of shown) {
    const W = stack[h];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        const w = W[i][j];
        if (!(w > 0.005)) continue;
        out += `<line data-h="${h}" data-i="${i}" data-j="${j}" x1="${xl + 4}" y1="${yOf(i)}" x2="${xr - 4}" y2="${yOf(j)}" ` +
          `stroke="${headColour(h)}" stroke-width="2.5" stroke-opacity="${(w * alpha).toFixed(3)}" data-o="${(w * alpha).toFixed(3)}"/>`;
      }
    }
  }
  out += '</g>';
  rows.forEach((t, i) => {
    out += `<text data-side="q" data-i="${i}" tabindex="0" role="button" aria-label="${esc(`query ${i}: ${t}`)}" x="${xl}" y="${yOf(i) + fs / 3}" ` +
      `font-size="${fs}" fill="${INK}" text-anchor="end">${esc(shorten(t, 18))}</text>`;
  });
  cols.forEach((t, j) => {
    out += `<text data-side="k" data-i="${j}" tabindex="0" role="button" aria-label="${esc(`key ${j}: ${t}`)}" x="${xr}" y="${yOf(j) + fs / 3}" ` +
      `font-size="${fs}" fill="${INK}">${esc(shorten(t, 18))}</text>`;
    out += `<text data-role="val" data-j="${j}" x="${xr + rw}" y="${yOf(j) + fs / 3}" font-size="11" fill="${MUTED}"></text>`;
  });
  const svg = svgElement(width, height, out, label);

  const lines = [...svg.querySelectorAll('line')];
  const vals = [...svg.querySelectorAll('text[data-role="val"]')];
  const tokens = [...svg.querySelectorAll('text[data-side]')];
  const reset = () => {
    for (const l of lines) {
      l.setAttribute('stroke-opacity', l.dataset.o);
      l.removeAttribute('visibility');
    }
    for (const v of vals) v.textContent = '';
    for (const t of tokens) {
      t.setAttribute('fill', INK);
      t.removeAttribute('font-weight');
    }
  };
  const focus = (side, idx) => {
    reset();
    for (const l of lines) {
      const mine = side === 'q' ? +l.dataset.i === idx : +l.dataset.j === idx;
      if (mine) l.setAttribute('stroke-opacity', Math.min(1, Number(l.dataset.o) / alpha).toFixed(3));
      else l.setAttribute('visibility', 'hidden');
    }
    const me = svg.querySelector(`text[data-side="${side}"][data-i="${idx}"]`);
    me.setAttribute('fill', ACCENT);
    me.setAttribute('font-weight', '700');
    if (side === 'q' && shown.length) {
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (const h of shown) s += stack[h][idx][j] ?? 0;
        vals[j].textContent = fmt(s / shown.length, 2);
      }
    }
  };
  svg.addEventListener('mouseover', (ev) => {
    const t = ev.target.closest('text[data-side]');
    if (t) focus(t.dataset.side, +t.dataset.i);
  });
  svg.addEventListener('mouseleave', reset);
  svg.addEventListener('focusin', (ev) => {
    const t = ev.target.closest('text[data-side]');
    if (t) focus(t.dataset.side, +t.dataset.i);
  });
  svg.addEventListener('focusout', reset);
  svg.addEventListener('keydown', (ev) => {
    const t = ev.target.closest('text[data-side]');
    if (!t || (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp')) return;
    const next = svg.querySelector(`text[data-side="${t.dataset.side}"][data-i="${+t.dataset.i + (ev.key === 'ArrowDown' ? 1 : -1)}"]`);
    if (next) {
      ev.preventDefault();
      next.focus();
    }
  });
  return svg;
}

// --------------------------------------------------------------------- export

/** The view's pictures as one standalone SVG document (interactive leftovers removed). */
export function exportSvg(container) {
  const roots = [...container.querySelectorAll('svg.view-root')].filter((s) => s.closest('[hidden]') === null);
  if (roots.length === 0) return null;
  const gap = 16;
  let width = 0, height = 0;
  const parts = [];
  for (const s of roots) {
    const c = s.cloneNode(true);
    c.querySelectorAll('[data-ui]').forEach((e) => e.remove());
    c.querySelectorAll('[visibility="hidden"]').forEach((e) => e.removeAttribute('visibility'));
    c.querySelectorAll('[tabindex]').forEach((e) => e.removeAttribute('tabindex'));
    const w = Number(s.getAttribute('width')), h = Number(s.getAttribute('height'));
    c.setAttribute('x', '0');
    c.setAttribute('y', String(height));
    parts.push(new XMLSerializer().serializeToString(c));
    width = Math.max(width, w);
    height += h + gap;
  }
  height -= gap;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="${NS}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${esc(FONT)}">` +
    `<rect width="100%" height="100%" fill="#ffffff"/>${parts.join('')}</svg>\n`;
}

/** Saves data (string or Blob) as a file named name. */
export function saveFile(name, data, type) {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

/** Renders an SVG document to a PNG Blob at twice its size. */
export async function svgToPng(svgText) {
  const url = URL.createObjectURL(new Blob([svgText], { type: 'image/svg+xml' }));
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth * 2;
    canvas.height = img.naturalHeight * 2;
    const ctx = canvas.getContext('2d');
    ctx.scale(2, 2);
    ctx.drawImage(img, 0, 0);
    return await new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('no PNG'))), 'image/png'));
  } finally {
    URL.revokeObjectURL(url);
  }
}
