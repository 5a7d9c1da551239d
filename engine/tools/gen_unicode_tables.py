#!/usr/bin/env python3
"""gen_unicode_tables.py - writes engine/src/model_unicode_tables.c, the Unicode data the tokenizers use.

Run from the repository root: python3 engine/tools/gen_unicode_tables.py
The tables come from Python's unicodedata (its Unicode version is recorded in the output):
  - general-category runs reduced to the classes the tokenizers test (letter, number, marks,
    punctuation, symbol, separators, control/format/private/surrogate/unassigned);
  - simple lower-case mappings (str.lower() of one character when it is one character);
  - canonical decompositions (NFD) with the nonspacing marks (Mn) removed, for accent stripping
    (Hangul syllables are left out: the C code decomposes them arithmetically).
"""
import os
import sys
import unicodedata as ud

OUT = os.path.join("engine", "src", "model_unicode_tables.c")

# Must match enum attn__uc_cat in model_internal.h.
CATS = ["CN", "L", "N", "MN", "M", "P", "S", "ZS", "ZLP", "CC", "CF", "CO", "CS"]


def reduced(cp):
    c = ud.category(chr(cp))
    if c[0] == "L":
        return "L"
    if c[0] == "N":
        return "N"
    if c == "Mn":
        return "MN"
    if c[0] == "M":
        return "M"
    if c[0] == "P":
        return "P"
    if c[0] == "S":
        return "S"
    if c == "Zs":
        return "ZS"
    if c in ("Zl", "Zp"):
        return "ZLP"
    return {"Cc": "CC", "Cf": "CF", "Co": "CO", "Cs": "CS", "Cn": "CN"}[c]


def rows(values, per_line, fmt):
    out = []
    for i in range(0, len(values), per_line):
        out.append("    " + " ".join(fmt(v) + "," for v in values[i:i + per_line]))
    return "\n".join(out)


def main():
    runs = []
    prev = None
    for cp in range(0x110000):
        r = reduced(cp)
        if r != prev:
            runs.append((cp << 5) | CATS.index(r))
            prev = r

    lower = []
    for cp in range(0x110000):
        s = chr(cp).lower()
        if len(s) == 1 and s != chr(cp):
            lower.append((cp, ord(s)))

    strip = []
    for cp in range(0x110000):
        if 0xAC00 <= cp <= 0xD7A3 or ud.category(chr(cp)) == "Mn":
            continue
        s = [ord(x) for x in ud.normalize("NFD", chr(cp)) if ud.category(x) != "Mn"]
        if s != [cp]:
            assert 1 <= len(s) <= 3, hex(cp)
            strip.append((cp, s + [0] * (3 - len(s))))

    with open(OUT, "w", encoding="ascii") as f:
        f.write("/* model_unicode_tables.c - Unicode %s data for the tokenizers "
                "(generated: do not edit). */\n" % ud.unidata_version)
        f.write("/* Written by engine/tools/gen_unicode_tables.py from Python's unicodedata. */\n")
        f.write('#include "model_internal.h"\n\n')
        f.write("/* (first code point << 5) | attn__uc_cat, ascending: a run lasts until the next. */\n")
        f.write("const uint32_t attn__uc_cat_runs[] = {\n")
        f.write(rows(runs, 8, lambda v: "0x%07x" % v))
        f.write("\n};\nconst size_t attn__uc_n_cat_runs = sizeof(attn__uc_cat_runs) / "
                "sizeof(attn__uc_cat_runs[0]);\n\n")
        f.write("/* {code point, its lower case}: str.lower() of one character, when one character. */\n")
        f.write("const uint32_t attn__uc_lower_table[][2] = {\n")
        f.write(rows(lower, 5, lambda v: "{0x%x, 0x%x}" % v))
        f.write("\n};\nconst size_t attn__uc_n_lower = sizeof(attn__uc_lower_table) / "
                "sizeof(attn__uc_lower_table[0]);\n\n")
        f.write("/* {code point, NFD without Mn marks (0-padded)}; Hangul syllables are computed. */\n")
        f.write("const uint32_t attn__uc_strip_table[][4] = {\n")
        f.write(rows(strip, 3, lambda v: "{0x%x, 0x%x, 0x%x, 0x%x}" % (v[0], *v[1])))
        f.write("\n};\nconst size_t attn__uc_n_strip = sizeof(attn__uc_strip_table) / "
                "sizeof(attn__uc_strip_table[0]);\n")
    print("%s: %d category runs, %d lower-case, %d decompositions (Unicode %s)"
          % (OUT, len(runs), len(lower), len(strip), ud.unidata_version), file=sys.stderr)


if __name__ == "__main__":
    main()
