// embed.js - the page's inputs: tokens, seeded token embeddings, and the features of the
// application views (glossary words, image patches, audio frames, caption words).

/** Words (letters and digits, with an apostrophe suffix such as "n't" or "'s") and single
 *  punctuation marks; spaces separate and are dropped. */
export function tokenize(text) {
  return text.match(/[\p{L}\p{N}]+(?:['’]\p{L}+)?|[^\s\p{L}\p{N}]/gu) ?? [];
}

/** FNV-1a, 32 bits, over the UTF-8 bytes of s. */
export function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** mulberry32: a small 32-bit generator; returns u in [0, 1). */
export function mulberry32(state) {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round4 = (x) => Math.round(x * 1e4) / 1e4 + 0; // + 0 turns -0 into 0

/** A key's deterministic vector: dim values scale * (2u - 1), rounded to 4 decimals, from
 *  mulberry32 seeded with fnv1a(key) XOR (seed * 0x9E3779B1). */
export function seededVector(key, dim, seed = 0, scale = 1) {
  const rng = mulberry32((fnv1a(key) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0);
  const v = new Array(dim);
  for (let i = 0; i < dim; i++) v[i] = round4(scale * (2 * rng() - 1));
  return v;
}

/** The embedding of one token: the seeded vector of its lower-case form. */
export function embedToken(token, dim, seed = 0, scale = 1) {
  return seededVector(token.toLowerCase(), dim, seed, scale);
}

export function embedTokens(tokens, dim, seed = 0, scale = 1) {
  return tokens.map((t) => embedToken(t, dim, seed, scale));
}

// ------------------------------------------------------------------ translation

/** A small glossary: a foreign word shares the embedding of its English meaning. */
const GLOSSARY = {
  le: 'the', la: 'the', les: 'the', "l'": 'the', un: 'a', une: 'a', chat: 'cat', chien: 'dog',
  était: 'was', est: 'is', assis: 'sat', sur: 'on', tapis: 'mat', dans: 'in', maison: 'house',
  petit: 'small', grand: 'big', rouge: 'red', et: 'and', mange: 'eats', souris: 'mouse',
  der: 'the', die: 'the', das: 'the', den: 'the', dem: 'the', ein: 'a', eine: 'a', katze: 'cat',
  hund: 'dog', saß: 'sat', sass: 'sat', auf: 'on', matte: 'mat', ist: 'is', war: 'was',
  im: 'in', haus: 'house', und: 'and', klein: 'small', rot: 'red', frisst: 'eats', maus: 'mouse',
  el: 'the', los: 'the', las: 'the', una: 'a', gato: 'cat', perro: 'dog', se: 'itself',
  sentó: 'sat', sento: 'sat', en: 'on', alfombra: 'mat', es: 'is', casa: 'house', y: 'and',
  rojo: 'red', come: 'eats', ratón: 'mouse',
};

/** Embeddings for cross-lingual alignment: the meaning's vector plus 0.25 of a vector of the
 *  word itself (so translations are close but not equal). */
export function embedGloss(tokens, dim, seed = 0, scale = 1) {
  return tokens.map((t) => {
    const low = t.toLowerCase();
    const meaning = seededVector(GLOSSARY[low] ?? low, dim, seed, scale);
    const own = seededVector('word:' + low, dim, seed, scale);
    return meaning.map((x, i) => round4(x + 0.25 * own[i]));
  });
}

// ------------------------------------------------------------------ images

/** Draws one of the generated pictures on a size x size canvas context. */
export function drawGeneratedImage(ctx, kind, size) {
  const s = size / 128;
  if (kind === 'shapes') {
    ctx.fillStyle = '#f4f1ea';
    ctx.fillRect(0, 0, size, size);
    ctx.fillStyle = '#d1495b';
    ctx.beginPath(); ctx.arc(34 * s, 36 * s, 22 * s, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = '#2e86ab';
    ctx.fillRect(70 * s, 16 * s, 44 * s, 40 * s);
    ctx.fillStyle = '#3bb273';
    ctx.beginPath(); ctx.moveTo(20 * s, 116 * s); ctx.lineTo(56 * s, 70 * s); ctx.lineTo(92 * s, 116 * s); ctx.fill();
    ctx.fillStyle = '#d1495b';
    ctx.beginPath(); ctx.arc(104 * s, 96 * s, 16 * s, 0, 2 * Math.PI); ctx.fill();
    return;
  }
  const sky = ctx.createLinearGradient(0, 0, 0, 80 * s);
  sky.addColorStop(0, '#3a7bd5');
  sky.addColorStop(1, '#9cc9f0');
  ctx.fillStyle = sky;
  ctx.fillRect(0, 0, size, 80 * s);
  ctx.fillStyle = '#4f9d3a';
  ctx.fillRect(0, 80 * s, size, 48 * s);
  ctx.fillStyle = '#ffd23f';
  ctx.beginPath(); ctx.arc(100 * s, 24 * s, 14 * s, 0, 2 * Math.PI); ctx.fill();
  ctx.fillStyle = '#c0392b';
  ctx.fillRect(20 * s, 60 * s, 44 * s, 34 * s);
  ctx.fillStyle = '#6b2d1f';
  ctx.beginPath(); ctx.moveTo(14 * s, 62 * s); ctx.lineTo(42 * s, 38 * s); ctx.lineTo(70 * s, 62 * s); ctx.fill();
  ctx.fillStyle = '#f5f5f5';
  ctx.fillRect(30 * s, 70 * s, 10 * s, 10 * s);
  ctx.fillStyle = '#5a3a1a';
  ctx.fillRect(46 * s, 76 * s, 10 * s, 18 * s);
}

/** The feature order of a patch (and of a caption word, which lives in the same space). */
export const PATCH_FEATURES = ['red', 'green', 'blue', 'bright', 'dark', 'texture', 'top', 'bottom', 'left', 'right'];

/**
 * Cuts RGBA pixels (size x size) into grid x grid patches and describes each by the
 * PATCH_FEATURES: mean red, green and blue above the pixel mean (chroma), brightness,
 * darkness, texture (standard deviation of the brightness) and its place (top, bottom, left,
 * right in [-1, 1]), each feature standardised over the patches. Returns {features [P][10],
 * labels [P] ("r2c5")}.
 */
export function patchFeatures(pixels, size, grid) {
  const ps = size / grid;
  const rows = [];
  const labels = [];
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      let sr = 0, sg = 0, sb = 0, sl = 0, sl2 = 0, n = 0;
      for (let y = Math.floor(r * ps); y < Math.floor((r + 1) * ps); y++) {
        for (let x = Math.floor(c * ps); x < Math.floor((c + 1) * ps); x++) {
          const o = (y * size + x) * 4;
          const R = pixels[o] / 255, G = pixels[o + 1] / 255, B = pixels[o + 2] / 255;
          const L = 0.299 * R + 0.587 * G + 0.114 * B;
          sr += R; sg += G; sb += B; sl += L; sl2 += L * L; n++;
        }
      }
      const mr = sr / n, mg = sg / n, mb = sb / n, ml = sl / n;
      const mean = (mr + mg + mb) / 3;
      const py = grid > 1 ? (2 * r) / (grid - 1) - 1 : 0;
      const px = grid > 1 ? (2 * c) / (grid - 1) - 1 : 0;
      rows.push([mr - mean, mg - mean, mb - mean, ml, 1 - ml, Math.sqrt(Math.max(0, sl2 / n - ml * ml)),
        -py, py, -px, px]);
      labels.push(`r${r}c${c}`);
    }
  }
  return { features: standardise(rows), labels };
}

/** Each column to mean 0 and standard deviation 1 (a constant column stays 0), 4 decimals. */
export function standardise(rows) {
  const d = rows[0].length;
  const out = rows.map((r) => r.slice());
  for (let j = 0; j < d; j++) {
    let m = 0;
    for (const r of rows) m += r[j];
    m /= rows.length;
    let v = 0;
    for (const r of rows) v += (r[j] - m) ** 2;
    const sd = Math.sqrt(v / rows.length);
    for (const r of out) r[j] = sd > 1e-9 ? round4((r[j] - m) / sd) : 0;
  }
  return out;
}

/** Caption words in the patch feature space: colour, light and place words. */
const WORD_FEATURES = {
  red: { red: 2 }, green: { green: 2 }, grass: { green: 1.5, bottom: 1 }, field: { green: 1.5, bottom: 1 },
  blue: { blue: 2 }, sky: { blue: 1.5, top: 1 }, yellow: { red: 1.2, green: 1.2, blue: -1.5, bright: 1 },
  sun: { red: 1, green: 1, blue: -1.5, bright: 1, top: 0.5 }, white: { bright: 2 }, light: { bright: 1.5 },
  bright: { bright: 1.5 }, dark: { dark: 2 }, black: { dark: 2 }, brown: { red: 1, dark: 1 },
  house: { red: 1, texture: 1 }, roof: { red: 0.5, dark: 1, texture: 1 }, door: { dark: 1, texture: 1 },
  window: { bright: 1, texture: 1.5 }, edge: { texture: 2 }, top: { top: 2 }, above: { top: 1.5 },
  up: { top: 1.5 }, bottom: { bottom: 2 }, below: { bottom: 1.5 }, under: { bottom: 1.5 },
  down: { bottom: 1.5 }, ground: { bottom: 2 }, left: { left: 2 }, right: { right: 2 },
  circle: { texture: 1 }, square: { texture: 1 }, triangle: { texture: 1 },
};

/** The caption's word vectors in the patch space (unknown words: zeros, so they attend
 *  evenly), scaled like standardised patch features. */
export function captionFeatures(tokens) {
  return tokens.map((t) => {
    const f = WORD_FEATURES[t.toLowerCase()] ?? {};
    return PATCH_FEATURES.map((name) => f[name] ?? 0);
  });
}

// ------------------------------------------------------------------ audio

export const AUDIO_RATE = 8000;

/** One second of a synthetic signal at AUDIO_RATE: "tones" = 440 Hz, noise, a 300-2000 Hz
 *  chirp, 440 Hz again; "beats" = four short 220 Hz bursts with silence between. */
export function synthSignal(kind) {
  const n = AUDIO_RATE;
  const x = new Float32Array(n);
  const rng = mulberry32(12345);
  for (let i = 0; i < n; i++) {
    const t = i / AUDIO_RATE;
    let v;
    if (kind === 'beats') {
      const phase = t % 0.25;
      v = phase < 0.08 ? Math.sin(2 * Math.PI * 220 * t) * Math.exp(-phase * 30) : 0;
      v += 0.01 * (2 * rng() - 1);
    } else if (t < 0.25 || t >= 0.75) {
      v = 0.8 * Math.sin(2 * Math.PI * 440 * t);
    } else if (t < 0.45) {
      v = 0.5 * (2 * rng() - 1);
    } else {
      const tc = t - 0.45; // instantaneous frequency 300 Hz + (1700 Hz / 0.3 s) tc
      v = 0.7 * Math.sin(2 * Math.PI * (300 * tc + 0.5 * ((2000 - 300) / 0.3) * tc * tc));
    }
    x[i] = v;
  }
  return x;
}

/** Band centres (Hz) of the frame features. */
const BANDS = [200, 300, 440, 700, 1000, 1500, 2000, 3000];

/**
 * Cuts the signal into `frames` equal frames and describes each: RMS loudness, zero-crossing
 * rate and the log energy in each of BANDS (Goertzel), standardised over the frames.
 * Returns {features [F][10], labels ["0.00s", ...]}.
 */
export function frameFeatures(x, frames) {
  const len = Math.floor(x.length / frames);
  const rows = [];
  const labels = [];
  for (let f = 0; f < frames; f++) {
    const s = f * len;
    let e = 0, zc = 0;
    for (let i = s; i < s + len; i++) {
      e += x[i] * x[i];
      if (i > s && (x[i] >= 0) !== (x[i - 1] >= 0)) zc++;
    }
    const row = [Math.sqrt(e / len), zc / len];
    for (const hz of BANDS) {
      const w = (2 * Math.PI * hz) / AUDIO_RATE;
      const k = 2 * Math.cos(w);
      let s1 = 0, s2 = 0;
      for (let i = s; i < s + len; i++) {
        const s0 = x[i] + k * s1 - s2;
        s2 = s1;
        s1 = s0;
      }
      const p = s1 * s1 + s2 * s2 - k * s1 * s2;
      row.push(Math.log10(1e-6 + p / len));
    }
    rows.push(row);
    labels.push(((f * len) / AUDIO_RATE).toFixed(2) + 's');
  }
  return { features: standardise(rows), labels };
}
