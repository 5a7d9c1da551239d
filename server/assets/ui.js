// ui.js - page plumbing shared by the views: tabs, form values, errors next to their controls,
// the latest request of each view, and the download buttons.

import { ApiError, curlCommand } from './api.js';
import { exportSvg, saveFile, svgToPng } from './draw.js';

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Tabs with the ARIA tabs pattern: click, arrow keys, Home/End; onSelect(tabButton). */
export function tabs(list, onSelect) {
  const buttons = $$('[role="tab"]', list);
  const select = (b, focus) => {
    for (const o of buttons) {
      const on = o === b;
      o.setAttribute('aria-selected', String(on));
      o.tabIndex = on ? 0 : -1;
      const panel = document.getElementById(o.getAttribute('aria-controls'));
      if (panel) panel.hidden = !on;
    }
    if (focus) b.focus();
    onSelect?.(b);
  };
  list.addEventListener('click', (ev) => {
    const b = ev.target.closest('[role="tab"]');
    if (b && !b.disabled) select(b, false);
  });
  list.addEventListener('keydown', (ev) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    const live = buttons.filter((b) => !b.disabled && !b.hidden);
    const at = live.indexOf(buttons[i]);
    let next = null;
    if (ev.key === 'ArrowRight') next = live[(at + 1) % live.length];
    else if (ev.key === 'ArrowLeft') next = live[(at - 1 + live.length) % live.length];
    else if (ev.key === 'Home') next = live[0];
    else if (ev.key === 'End') next = live[live.length - 1];
    if (next) {
      ev.preventDefault();
      select(next, true);
    }
  });
  return { select: (id) => select(document.getElementById(id), false) };
}

/** An integer from an input; undefined when empty; NaN when not an integer. */
export function intOf(el) {
  const s = el.value.trim();
  if (s === '') return undefined;
  const v = Number(s);
  return Number.isInteger(v) ? v : NaN;
}

/** A number from an input; undefined when empty; NaN when not a number. */
export function numOf(el) {
  const s = el.value.trim();
  if (s === '') return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : NaN;
}

/** "0, 3 5" -> [0, 3, 5]; undefined when empty; null when something is not an index. */
export function indexList(el) {
  const s = el.value.trim();
  if (s === '') return undefined;
  const parts = s.split(/[\s,;]+/).filter(Boolean);
  const v = parts.map(Number);
  return v.every((x) => Number.isInteger(x) && x >= 0) ? v : null;
}

/** The width pictures may take in a view: that of its results box (a hidden view has none). */
export function roomFor(view) {
  const box = view.closest('.results') ?? view;
  return Math.max(360, (box.clientWidth || 1030) - 30);
}

/** A mistake found before sending: shown like an API error at field. */
export class InputError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/**
 * Errors next to the controls that caused them. scope: the panel element; map: JSON Pointer
 * prefix (longest first wins) -> id of the error element (its control is the element whose
 * aria-describedby names it); fallback: the id of the panel's general error element.
 */
export class ErrorSlots {
  constructor(scope, map, fallback) {
    this.scope = scope;
    this.results = scope.querySelector('.results'); // dimmed while an error stands
    this.results?.classList.remove('stale');
    this.map = Object.entries(map).sort((a, b) => b[0].length - a[0].length);
    this.fallback = fallback;
  }

  clear() {
    for (const el of $$('.error', this.scope)) el.textContent = '';
    for (const el of $$('[aria-invalid="true"]', this.scope)) el.removeAttribute('aria-invalid');
    this.results?.classList.remove('stale');
  }

  /** Shows err (ApiError, InputError or another Error) at its control. */
  show(err) {
    this.clear();
    this.results?.classList.add('stale');
    const field = err.field ?? '';
    let id = this.fallback;
    for (const [prefix, target] of this.map) {
      if (field === prefix || field.startsWith(prefix + '/')) {
        id = target;
        break;
      }
    }
    const slot = document.getElementById(id);
    const where = field ? ` (at ${field})` : '';
    const status = err instanceof ApiError && err.status ? `${err.status} ${err.code}: ` : '';
    slot.textContent = `${status}${err.message}${where}`;
    const control = this.scope.querySelector(`[aria-describedby~="${id}"]`);
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      if (document.activeElement === document.body) control.focus();
    }
  }
}

/**
 * The latest request and picture container of each view, for the download buttons:
 * views[key] = {path, body, container, name}, or {requests: [{path, body, label}], ...}.
 */
export const views = {};

/** Adds the SVG, PNG and curl buttons to each .downloads[data-for] element. */
export function downloadButtons(curlDialog) {
  for (const box of $$('.downloads[data-for]')) {
    const key = box.dataset.for;
    box.innerHTML =
      `<button type="button" data-dl="svg" aria-label="Download the ${key} view as SVG">SVG</button>` +
      `<button type="button" data-dl="png" aria-label="Download the ${key} view as PNG">PNG</button>` +
      `<button type="button" data-dl="curl" aria-label="The ${key} request as a curl command">curl</button>`;
    box.addEventListener('click', async (ev) => {
      const kind = ev.target.closest('button')?.dataset.dl;
      const v = views[key];
      if (!kind || !v) return;
      if (kind === 'curl') {
        const reqs = v.requests ?? [{ path: v.path, body: v.body }];
        const text = reqs.map((r) => (r.label ? `# ${r.label}\n` : '') + curlCommand(r.path, r.body)).join('\n\n');
        curlDialog.open(text, `${v.name}.sh`);
        return;
      }
      const svg = exportSvg(v.container);
      if (!svg) return;
      if (kind === 'svg') saveFile(`${v.name}.svg`, svg, 'image/svg+xml');
      else saveFile(`${v.name}.png`, await svgToPng(svg));
    });
  }
}

/** The curl dialog: shows the command, copies it, saves it as a script. */
export function curlDialog() {
  const dlg = $('#curl-dialog');
  const pre = $('#curl-text');
  let name = 'request.sh';
  $('#curl-close').addEventListener('click', () => dlg.close());
  $('#curl-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(pre.textContent);
      $('#curl-copy').textContent = 'Copied';
    } catch {
      const r = document.createRange();
      r.selectNodeContents(pre);
      getSelection().removeAllRanges();
      getSelection().addRange(r);
    }
  });
  $('#curl-save').addEventListener('click', () => saveFile(name, `#!/bin/sh\n${pre.textContent}\n`, 'text/x-shellscript'));
  return {
    open(text, file) {
      pre.textContent = text;
      name = file;
      $('#curl-copy').textContent = 'Copy';
      dlg.showModal();
      pre.focus();
    },
  };
}

/** Runs one request at a time per view: a newer call aborts the older one. */
export function latest() {
  let ctrl = null;
  return () => {
    ctrl?.abort();
    ctrl = new AbortController();
    return ctrl.signal;
  };
}
