// Differential oracle for gateway/consent/gpp.py: the IAB reference library @iabgpp/cmpapi.
//
//   node gpp_decode.mjs encode SEED COUNT
//       COUNT random GppModels (seeded, so a failure can be replayed) over every section the
//       library supports, each field random within its domain (the library's own validators
//       say which values are allowed), GPC / sensitive-data sub-sections present or not,
//       usnat written in both of its layouts and some tcfcav1 sections in the legacy Int(16)
//       range form. One JSON line per model: {"gpp": <string>, "legacy": <tcfcav1 in the
//       legacy form?>, "decoded": <decoding>}.
//   node gpp_decode.mjs decode
//       One GPP string per stdin line; one JSON line each: {"ok": true, "decoded": ...},
//       {"ok": false, "error": <message>}, or {"ok": null, "skipped": <why>} for a string
//       whose tcfcav1 section would make the library expand millions of ids (see below).
//
// <decoding> is {"section_ids": [...], "sections": {<prefix>: GppModel.getSection(prefix)}},
// decoded afresh from the string, plus the "…SegmentIncluded" flags es keeps out of it.
import { createInterface } from "node:readline";
import * as cmpapi from "@iabgpp/cmpapi";
import {
  BitStringEncoder,
  CompressedBase64UrlEncoder,
  GppModel,
  HeaderV1,
  RangeEntry,
  Sections,
  TCFCAV1_CORE_SEGMENT_FIELD_NAMES,
  TCFCAV1_DISCLOSED_VENDORS_SEGMENT_FIELD_NAMES,
  TcfCaV1,
  TcfCaV1CoreSegment,
  TcfCaV1DisclosedVendorsSegment,
} from "@iabgpp/cmpapi";

// mulberry32: small, seedable, good enough to spread test cases
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// section name -> its class, e.g. "usnat" -> UsNat
const SECTION_CLASSES = Object.fromEntries(
  Object.values(cmpapi)
    .filter((c) => typeof c === "function" && Sections.SECTION_ORDER.includes(c.NAME))
    .map((c) => [c.NAME, c]),
);

const INCLUDED_FLAGS = ["GpcSegmentIncluded", "SensitiveDataConsentSegmentIncluded"];
const SKIPPED = new Set([...INCLUDED_FLAGS, "Created", "LastUpdated", "NumCustomPurposes"]);

// Per section: [field name, datatype] in encoding order, and the "…Included" flags it has.
const LAYOUT = Object.fromEntries(
  Object.entries(SECTION_CLASSES).map(([name, Section]) => {
    const fields = [];
    const flags = [];
    for (const segment of new Section().segments) {
      for (const field of segment.getFieldNames()) fields.push([field, segment.fields.get(field)]);
      flags.push(...INCLUDED_FLAGS.filter((flag) => segment.hasField(flag)));
    }
    return [name, { fields, flags }];
  }),
);

function makeGen(random) {
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (xs) => xs[int(0, xs.length - 1)];
  const bools = (n) => Array.from({ length: n }, () => random() < 0.5);
  const letters = (upperOnly) =>
    Array.from({ length: 2 }, () =>
      String.fromCharCode(upperOnly || random() < 0.8 ? int(65, 90) : int(97, 122)),
    ).join("");
  const ids = () => {
    const out = new Set();
    switch (int(0, 5)) {
      case 0:
        return [];
      case 1: // a few sparse ids
        for (let n = int(1, 6); n > 0; n--) out.add(int(1, 3000));
        break;
      case 2: // dense runs: the range form wins
        for (let n = int(1, 4); n > 0; n--) {
          const start = int(1, 2000);
          for (let i = start, end = start + int(1, 300); i <= end; i++) out.add(i);
        }
        break;
      case 3: // random bits below a small max: the bitfield form wins
        for (let i = 1, max = int(1, 200); i <= max; i++) if (random() < 0.5) out.add(i);
        break;
      case 4: // far ids: long Fibonacci code words
        for (let n = int(1, 3); n > 0; n--) out.add(int(30000, 65535));
        break;
      default: // a single run, or touching singles
        for (let i = int(1, 50), n = int(1, 12); n > 0; n--, i += int(1, 2)) out.add(i);
    }
    return [...out].sort((a, b) => a - b);
  };
  const date = () => new Date(int(9466848000, 41024448000) * 100); // 2000..2100, deciseconds
  return { int, pick, bools, letters, ids, date, random };
}

// A random value for one field of one section, within the field's domain.
function valueFor(g, section, name, field, numCustom) {
  const kind = field.constructor.name;
  const allowed = (candidates) => candidates.filter((v) => field.validator.test(v));
  if (name === "Version" || name === "MspaVersion") {
    if (section === "uspv1") return undefined; // the letter "1", fixed
    if (section === "usnat") return g.pick([1, 2, 1, 2, g.int(0, 63)]);
    if (section === "tcfeuv2") return 2; // the TC string decoder reads version 2 only
    if (section === "tcfcav1") return g.int(0, 7); // segment types are told by the first 3 bits
    return g.int(0, 63);
  }
  if (name === "PolicyVersion") return g.pick([2, 4, 5]);
  if (name === "IsServiceSpecific") return true; // the library refuses to encode false
  switch (kind) {
    case "EncodableFixedInteger": {
      if (field.validator) return g.pick(allowed([0, 1, 2, 3]));
      return g.random() < 0.1 ? 2 ** field.bitStringLength - 1 : g.int(0, 2 ** field.bitStringLength - 1);
    }
    case "EncodableFixedIntegerList": {
      const domain = [0, 1, 2, 3].filter((v) => !field.validator || field.validator.test([v]));
      return Array.from({ length: field.numElements }, () => g.pick(domain));
    }
    case "EncodableBoolean":
      return g.random() < 0.5;
    case "EncodableFixedBitfield":
      return g.bools(field.numElements);
    case "EncodableFlexibleBitfield":
      return g.bools(numCustom);
    case "EncodableFixedString":
      return g.letters(section === "tcfeuv2");
    case "EncodableOptimizedFibonacciRange":
    case "EncodableOptimizedFixedRange":
      return g.ids();
    case "EncodableArrayOfOptimizedFibonacciRanges":
    case "EncodableArrayOfFixedIntegerRanges":
      return Array.from(
        { length: g.pick([0, 0, 1, 2, 4]) },
        () => new RangeEntry(g.int(section === "tcfeuv2" ? 1 : 0, 24), g.int(0, 3), g.ids()),
      );
    case "UnencodableCharacter":
      return g.pick(["Y", "N", "-"]);
    default:
      return undefined; // UnencodableInteger (uspv1's version): fixed
  }
}

function randomModel(g) {
  const model = new GppModel();
  for (const section of Sections.SECTION_ORDER) {
    if (g.random() >= 0.35) continue;
    const numCustom = g.int(0, 10);
    const sets = [];
    for (const [name, field] of LAYOUT[section].fields) {
      if (SKIPPED.has(name) || name.endsWith("SegmentType")) continue;
      const v = valueFor(g, section, name, field, numCustom);
      if (v !== undefined) sets.push([name, v]);
    }
    for (const flag of LAYOUT[section].flags) sets.push([flag, g.random() < 0.6]);
    if (section.startsWith("tcf")) sets.unshift(["NumCustomPurposes", numCustom]);
    for (const [name, v] of sets) model.setFieldValue(section, name, v);
    if (section.startsWith("tcf")) {
      // last: setting any other field stamps both with "now"
      model.setFieldValue(section, "Created", g.date());
      model.setFieldValue(section, "LastUpdated", g.date());
    }
  }
  const gpp = model.encode();
  if (model.hasSection("tcfcav1") && g.random() < 0.4) {
    const legacy = withLegacyTcfCa(model, gpp);
    return { gpp: legacy, legacy: legacy !== gpp };
  }
  return { gpp, legacy: false };
}

// The tcfcav1 section re-written with the library's legacy Int(16) range datatypes, as its
// encoder wrote them before 3.2.0 (TcfCaV1CoreSegment.buildFields(true)).
function withLegacyTcfCa(model, gpp) {
  const bits = BitStringEncoder.getInstance();
  const base64 = CompressedBase64UrlEncoder.getInstance();
  const encode = (segment, names) => {
    const fields = segment.buildFields(true);
    for (const name of names) {
      if (!name.endsWith("SegmentType")) fields.get(name).setValue(model.getFieldValue("tcfcav1", name));
    }
    return base64.encode(bits.encode(fields, names));
  };
  const parts = model.encodeSection("tcfcav1").split(".");
  parts[0] = encode(new TcfCaV1CoreSegment(), TCFCAV1_CORE_SEGMENT_FIELD_NAMES);
  if (parts.length > 2) {
    parts[2] = encode(new TcfCaV1DisclosedVendorsSegment(), TCFCAV1_DISCLOSED_VENDORS_SEGMENT_FIELD_NAMES);
  }
  // The library tries the Fibonacci reading first, and it expands ranges without a bound: a
  // legacy string whose Fibonacci reading names millions of ids would take node down.
  const core = base64.decode(parts[0]);
  if (fibExpansion(core, CORE_RANGES_AT, 3) > 1e6) return gpp;
  if (parts.length > 2 && fibExpansion(base64.decode(parts[2]), 3, 1) > 1e6) return gpp;
  const sections = gpp.split("~");
  sections[1 + model.getSectionIds().indexOf(TcfCaV1.ID)] = parts.join(".");
  return sections.join("~");
}

// tcfcav1 core: the bits before VendorExpressConsent
const CORE_RANGES_AT = 6 + 36 + 36 + 12 + 12 + 6 + 12 + 12 + 6 + 1 + 12 + 24 + 24;

// How many ids the Fibonacci reading of `fields` OptimizedRanges (the last one an array of
// them, as PubRestrictions) starting at `pos` would expand to; Infinity once past 1e6.
function fibExpansion(bits, pos, fields) {
  let total = 0;
  const uint = (n) => {
    const v = parseInt(bits.substring(pos, pos + n) || "0", 2);
    pos += n;
    return v;
  };
  const fib = () => {
    const end = bits.indexOf("11", pos);
    if (end < 0) throw new Error("truncated");
    let v = 0;
    for (let i = pos, a = 1, b = 2; i <= end; i++, [a, b] = [b, a + b]) if (bits[i] === "1") v += a;
    pos = end + 2;
    return v;
  };
  const range = () => {
    const max = uint(16);
    if (uint(1) === 0) {
      pos += max;
      return;
    }
    for (let n = uint(12), prev = 0; n > 0; n--) {
      const group = uint(1);
      const start = prev + fib();
      const end = group ? start + fib() : start;
      total += end - start + 1;
      if (total > 1e6) throw new Error("too many");
      prev = end;
    }
  };
  try {
    for (let f = 0; f < fields; f++) {
      if (f === 2) {
        for (let n = uint(12); n > 0; n--) {
          pos += 8; // key, type
          range();
        }
      } else {
        range();
      }
    }
  } catch (e) {
    return e.message === "too many" ? Infinity : total;
  }
  return total;
}

// Whether any tcfcav1 segment of `gpp` would expand to more than a million ids.
function tcfCaTooLarge(gpp) {
  const sections = gpp.split("~");
  let ids;
  try {
    ids = new HeaderV1(sections[0]).getFieldValue("SectionIds");
  } catch (e) {
    return false; // the library refuses it before any section is read
  }
  const at = ids.indexOf(TcfCaV1.ID);
  if (at < 0 || at + 1 >= sections.length) return false;
  const base64 = CompressedBase64UrlEncoder.getInstance();
  for (const segment of sections[at + 1].split(".")) {
    if (!/^[A-Za-z0-9_-]+$/.test(segment)) continue;
    const first = segment[0];
    if (first >= "A" && first <= "H" && fibExpansion(base64.decode(segment), CORE_RANGES_AT, 3) > 1e6) return true;
    if (first >= "I" && first <= "P" && fibExpansion(base64.decode(segment), 3, 1) > 1e6) return true;
  }
  return false;
}

function decode(gpp) {
  const model = new GppModel(gpp);
  const sections = {};
  for (const [name, fields] of Object.entries(model.toObject())) {
    for (const flag of LAYOUT[name].flags) fields[flag] = model.getFieldValue(name, flag);
    sections[name] = fields;
  }
  return { section_ids: model.getSectionIds(), sections };
}

const [mode, seed, count] = process.argv.slice(2);
if (mode === "encode") {
  const g = makeGen(rng(Number(seed)));
  const out = [];
  for (let i = 0; i < Number(count); i++) {
    const { gpp, legacy } = randomModel(g);
    out.push(JSON.stringify({ gpp, legacy, decoded: decode(gpp) }));
  }
  process.stdout.write(out.join("\n") + "\n");
} else if (mode === "decode") {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    try {
      // The library expands tcfcav1's Fibonacci ranges without a bound, so arbitrary bits in
      // a tcfcav1 section can exhaust node's memory: such strings are not handed to it.
      if (tcfCaTooLarge(line)) {
        process.stdout.write(JSON.stringify({ ok: null, skipped: "tcfcav1 ranges" }) + "\n");
        continue;
      }
      process.stdout.write(JSON.stringify({ ok: true, decoded: decode(line) }) + "\n");
    } catch (e) {
      process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.message) }) + "\n");
    }
  }
} else {
  process.stderr.write("usage: gpp_decode.mjs encode SEED COUNT | decode < strings\n");
  process.exit(2);
}
