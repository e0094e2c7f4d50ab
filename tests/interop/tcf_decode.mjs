// IAB's reference implementation (@iabtechlabtcf/core) on the other side of the TC string
// differential test (tests/consent/test_tcf_differential.py). No network: no GVL is fetched.
//
//   node tcf_decode.mjs decode               TC strings on stdin, one per line; one JSON line
//                                            out per input: {"ok": true, "tc": {...}} or
//                                            {"ok": false, "error": "..."}
//   node tcf_decode.mjs encode SEED COUNT    COUNT random TC strings made by the reference
//                                            encoder from a seeded PRNG; one JSON line each:
//                                            {"s": string, "path": ..., "ok": ..., "tc": ...}
//                                            where ok/tc are the reference decoder's reading
//
// "tc" has exactly the keys of gateway.consent.tcf.TCString.to_json, with the same rules
// (ids ascending, times ISO-8601 UTC with a single fractional digit only when non-zero,
// disclosed_vendors/allowed_vendors null when the string has no such segment).

import { createInterface } from 'node:readline';
import {
  Base64Url,
  GVL,
  PurposeRestriction,
  Segment,
  SegmentEncoder,
  TCModel,
  TCString,
} from '@iabtechlabtcf/core';

const ids = (vector) => Array.from(vector.values()).sort((a, b) => a - b);

// Date.toISOString always has milliseconds; TC string times are whole deciseconds.
const iso = (date) => date.toISOString().replace(/\.000Z$/, 'Z').replace(/\.(\d)00Z$/, '.$1Z');

// The reference model cannot tell an absent segment from an empty one, so presence is read
// from the string itself: the first 3 bits of each segment after the core.
const segmentTypes = (s) => s.split('.').slice(1).filter((part) => part.length > 0)
  .map((part) => parseInt(Base64Url.decode(part.charAt(0)).slice(0, 3), 2));

function toJson(m, s) {
  const types = segmentTypes(s);
  const restrictions = [];
  m.publisherRestrictions.map.forEach((vendors, hash) => {
    const pr = PurposeRestriction.unHash(hash);
    if (vendors.size > 0) {
      restrictions.push({
        purpose_id: pr.purposeId,
        restriction_type: pr.restrictionType,
        vendors: Array.from(vendors).sort((a, b) => a - b),
      });
    }
  });
  restrictions.sort((a, b) => a.purpose_id - b.purpose_id || a.restriction_type - b.restriction_type);
  return {
    version: m.version,
    created: iso(m.created),
    last_updated: iso(m.lastUpdated),
    cmp_id: m.cmpId,
    cmp_version: m.cmpVersion,
    consent_screen: m.consentScreen,
    consent_language: m.consentLanguage,
    vendor_list_version: m.vendorListVersion,
    policy_version: m.policyVersion,
    is_service_specific: m.isServiceSpecific,
    use_non_standard_texts: m.useNonStandardTexts,
    special_feature_optins: ids(m.specialFeatureOptins),
    purpose_consents: ids(m.purposeConsents),
    purpose_legitimate_interests: ids(m.purposeLegitimateInterests),
    purpose_one_treatment: m.purposeOneTreatment,
    publisher_country_code: m.publisherCountryCode,
    vendor_consents: ids(m.vendorConsents),
    vendor_legitimate_interests: ids(m.vendorLegitimateInterests),
    publisher_restrictions: restrictions,
    disclosed_vendors: types.includes(1) ? ids(m.vendorsDisclosed) : null,
    allowed_vendors: types.includes(2) ? ids(m.vendorsAllowed) : null,
    publisher_consents: ids(m.publisherConsents),
    publisher_legitimate_interests: ids(m.publisherLegitimateInterests),
    custom_purpose_consents: ids(m.publisherCustomConsents),
    custom_purpose_legitimate_interests: ids(m.publisherCustomLegitimateInterests),
  };
}

function decodeOne(s) {
  try {
    return { ok: true, tc: toJson(TCString.decode(s), s) };
  } catch (err) {
    return { ok: false, error: String(err && err.message ? err.message : err).slice(0, 200) };
  }
}

// --- encode mode ---------------------------------------------------------------------------

// mulberry32: small, seedable, and the same on every machine.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeRandom(seed) {
  const next = prng(seed);
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
  const chance = (p) => next() < p;
  const pick = (items) => items[int(0, items.length - 1)];
  const subset = (n, p = 0.5) => {
    const out = [];
    for (let i = 1; i <= n; i++) if (chance(p)) out.push(i);
    return out;
  };
  // Vendor id sets in shapes that favour either encoding: sparse (bitfield wins), runs
  // (ranges win), a few large ids (ranges win), or empty.
  const vendors = (cap) => {
    const shape = int(0, 9);
    if (shape === 0) return [];
    if (shape <= 3) return subset(Math.min(cap, int(1, 600)), pick([0.05, 0.3, 0.7]));
    const out = new Set();
    const runs = int(1, 8);
    const top = Math.min(cap, chance(0.02) ? 65535 : pick([100, 1000, 3000]));
    for (let r = 0; r < runs; r++) {
      const start = int(1, top);
      const end = Math.min(top, start + (chance(0.3) ? 0 : int(1, 200)));
      for (let v = start; v <= end; v++) out.add(v);
    }
    return Array.from(out);
  };
  // Restricted vendors: a few runs, as publishers restrict chosen vendors or whole ranges.
  const runs = (cap) => {
    const out = [];
    for (let n = int(0, 4); n > 0; n--) {
      const start = int(1, cap);
      for (let v = start; v <= Math.min(cap, start + int(0, 60)); v++) out.push(v);
    }
    return out;
  };
  const letters = () => String.fromCharCode(65 + int(0, 25), 65 + int(0, 25));
  const time = () => new Date(100 * (chance(0.5)
    ? int(0, 2 ** 36 - 1) // any decisecond the field can hold
    : 10 * 86400 * int(15000, 21000))); // midnight UTC, as CMPs write since 2021
  return { int, chance, pick, subset, vendors, runs, letters, time };
}

// A GVL built in memory (vendors 1..400 with gaps) for the TCString.encode path, whose
// semantic pre-encoding needs one. Every vendor declares purposes 1-11 (LI for 2 and 7-11,
// all flexible), so pre-encoding keeps most of the model; what it drops (vendors outside the
// GVL, LI for purposes 1 and 3-6, restrictions the declarations do not allow) does not
// matter: the comparison is with the reference decoder's reading of the string.
function syntheticGvl() {
  const named = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [i + 1, {
    id: i + 1, name: `item ${i + 1}`, description: '', illustrations: [],
  }]));
  const all = Array.from({ length: 11 }, (_, i) => i + 1);
  const vendors = {};
  for (let id = 1; id <= 400; id++) {
    if (id % 7 === 3) continue; // gaps: vendor ids that the GVL does not know
    vendors[id] = {
      id, name: `vendor ${id}`, purposes: all, legIntPurposes: [2, 7, 8, 9, 10, 11],
      flexiblePurposes: all, specialPurposes: [1, 2], features: [1], specialFeatures: [1],
    };
  }
  return new GVL({
    gvlSpecificationVersion: 3, vendorListVersion: 150, tcfPolicyVersion: 5,
    lastUpdated: '2025-01-01T00:00:00Z', purposes: named(11), specialPurposes: named(2),
    features: named(3), specialFeatures: named(2), stacks: {}, dataCategories: {}, vendors,
  });
}

function randomModel(r, gvl) {
  const m = gvl ? new TCModel(gvl) : new TCModel();
  m.created = r.time();
  m.lastUpdated = r.chance(0.5) ? m.created : r.time();
  m.cmpId = r.int(2, 4095); // the model's setter refuses 0 and 1
  m.cmpVersion = r.int(0, 4095);
  m.consentScreen = r.int(0, 63);
  m.consentLanguage = r.letters();
  m.vendorListVersion = r.int(0, 4095);
  m.policyVersion = r.pick([2, 4, 5, r.int(0, 63)]);
  m.isServiceSpecific = r.chance(0.8);
  m.useNonStandardTexts = r.chance(0.2);
  m.purposeOneTreatment = r.chance(0.2);
  m.publisherCountryCode = r.letters();
  const cap = gvl ? 400 : 65535;
  m.specialFeatureOptins.set(r.subset(12, 0.3));
  m.purposeConsents.set(r.subset(24, 0.4));
  m.purposeLegitimateInterests.set(r.subset(24, 0.3));
  m.vendorConsents.set(r.vendors(cap));
  m.vendorLegitimateInterests.set(r.vendors(cap));
  m.vendorsDisclosed.set(r.vendors(cap));
  m.vendorsAllowed.set(r.vendors(cap));
  const restrictions = r.chance(0.5) ? r.int(1, 8) : 0;
  for (let i = 0; i < restrictions; i++) {
    const pr = new PurposeRestriction(r.chance(0.9) ? r.int(1, 11) : r.int(1, 63), r.int(0, 2));
    for (const v of r.runs(gvl ? 400 : 3000)) m.publisherRestrictions.add(v, pr);
  }
  m.publisherConsents.set(r.subset(24, 0.3));
  m.publisherLegitimateInterests.set(r.subset(24, 0.3));
  const custom = r.chance(0.5) ? r.int(0, 63) : 0;
  m.numCustomPurposes = custom;
  m.publisherCustomConsents.set(r.subset(custom, 0.5));
  m.publisherCustomLegitimateInterests.set(r.subset(custom, 0.5));
  return m;
}

// Vendor ids the stand-in GVL knows, for the restriction encoder (see encodeOne).
const KNOWN_ALL = new Set(Array.from({ length: 3001 }, (_, i) => i + 1));
const KNOWN_EVEN = new Set(Array.from({ length: 1500 }, (_, i) => 2 * (i + 1)));

function encodeOne(r, gvl, useGvl) {
  if (useGvl) {
    // The library's front door: semantic pre-encoding against the GVL, then its own
    // segment sequence (core, disclosed vendors and, when service specific, publisher TC).
    return { s: TCString.encode(randomModel(r, gvl)), path: 'TCString.encode' };
  }
  // The same segment encoder TCString.encode ends in, without the GVL-driven pre-encoding,
  // so every field and vendor id up to 65535 can be set. Restriction ranges consult the
  // GVL's vendor ids to bridge gaps; here every id counts as known, or (sometimes) only the
  // even ones, so that encoded ranges also span ids the model did not list.
  const m = randomModel(r, null);
  m.publisherRestrictions.gvl = { vendorIds: r.chance(0.2) ? KNOWN_EVEN : KNOWN_ALL };
  const others = [Segment.VENDORS_DISCLOSED, Segment.VENDORS_ALLOWED, Segment.PUBLISHER_TC]
    .filter(() => r.chance(0.5));
  for (let i = others.length - 1; i > 0; i--) { // Fisher-Yates: segments in any order
    const j = r.int(0, i);
    [others[i], others[j]] = [others[j], others[i]];
  }
  const segments = [Segment.CORE, ...others];
  return { s: segments.map((seg) => SegmentEncoder.encode(m, seg)).join('.'), path: 'SegmentEncoder' };
}

async function main() {
  const [mode = 'decode', seedArg = '1', countArg = '10000'] = process.argv.slice(2);
  const out = [];
  const flush = () => { process.stdout.write(out.join('\n') + '\n'); out.length = 0; };
  if (mode === 'encode') {
    const r = makeRandom(Number(seedArg));
    const gvl = syntheticGvl();
    const count = Number(countArg);
    for (let i = 0; i < count; i++) {
      let line;
      try {
        const { s, path } = encodeOne(r, gvl, i % 20 === 0);
        line = { s, path, ...decodeOne(s) };
      } catch (err) {
        line = { s: null, path: 'error', ok: false, error: String(err && err.message).slice(0, 200) };
      }
      out.push(JSON.stringify(line));
      if (out.length >= 500) flush();
    }
    if (out.length) flush();
    return;
  }
  if (mode !== 'decode') {
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
  }
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    out.push(JSON.stringify(decodeOne(line)));
    if (out.length >= 500) flush();
  }
  if (out.length) flush();
}

await main();
