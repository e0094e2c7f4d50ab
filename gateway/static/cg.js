// consent-gateway router (docs/router.md). Served after a generated prelude that defines
// C = {h: {host: vendor}, w: {suffix: vendor}, m: {host: path prefix}, v: [[purposes] per
// vendor], g: {purpose: [Consent Mode types]}, b: base path, o: {options}} and closed by
// the server.
// Served without its // comment lines and the spaces around punctuation outside strings
// (gateway/router.py): only '-quoted strings, no regex literal with a space.
const W = window, D = document, N = navigator, S = D.currentScript
const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k)
// The gateway is where this script came from: no per-host configuration, and correct
// behind any proxy that rewrote the host.
const BASE = S && S.src ? S.src.replace(/\/cg\.js(?:[?#].*)?$/, '') : location.origin + C.b
const GWO = new URL(BASE).origin, GWP = new URL(BASE).pathname.replace(/\/$/, '')
const XO = GWO !== location.origin
const attr = (n) => S && S.hasAttribute('data-' + n)
const O = Object.assign({}, C.o, W.consentGatewayOptions || {})
if (attr('hold')) O.hold = true
if (attr('sw')) O.sw = true
const of = W.fetch, ob = N.sendBeacon && N.sendBeacon.bind(N)

function vendor(h) {
  if (own(C.h, h)) return C.h[h]
  for (let i = h.indexOf('.'); i > 0; i = h.indexOf('.', i + 1)) {
    const s = h.slice(i + 1)
    if (own(C.w, s)) return C.w[s]
  }
  return -1
}

const seen = new Set()
function report(x) {
  const h = x.hostname
  if (seen.has(h) || x.origin === location.origin || x.origin === GWO || !ob) return
  seen.add(h)
  try {
    ob(BASE + '/cg-report', JSON.stringify({kind: 'unlisted', host: h, page: location.pathname}))
  } catch (e) {}
}

// {u: the gateway URL, v: vendor index} for a request to a listed host, else null.
function route(u) {
  let x
  try { x = new URL(String(u), D.baseURI) } catch (e) { return null }
  if (!/^https?:$/.test(x.protocol)) return null
  if (x.origin === GWO && (x.pathname + '/').startsWith(GWP + '/')) return null
  const v = x.port ? -1 : vendor(x.hostname)
  if (v < 0) { report(x); return null }
  // a host added with a path prefix (rules.vendor_hosts) is the vendor's under it only
  if (own(C.m, x.hostname) && !(x.pathname + '/').startsWith(C.m[x.hostname] + '/')) return null
  return {u: BASE + '/t/' + x.hostname + x.pathname + x.search, v}
}

// -- consent: which purposes are answered ('g'ranted, 'd'enied, 'p'ending) -------------
let st = null
const L = []
// A vendor whose endpoints need no purpose but `necessary` is never held.
const pending = (v) => !!O.hold && C.v[v].length > 0 && (st === null || C.v[v].some((p) => st[p] === 'p'))
const granted = (v) => C.v[v].length === 0 || C.v[v].some((p) => st && st[p] === 'g')

// -- hold and replay: page memory only, bounded, in order ------------------------------
const Q = [], MAX = 200, AGE = 6e5
let chain = Promise.resolve()
function drop(e) { try { e.no && e.no() } catch (_) {} }
function expire() {
  const t = Date.now() - AGE
  while (Q.length && Q[0].t < t) drop(Q.shift())
}
function hold(v, go, no) {
  expire()
  if (Q.length >= MAX) return no && no()
  Q.push({v, go, no, t: Date.now()})
}
function flush() {
  expire()
  const keep = []
  for (const e of Q.splice(0)) {
    if (pending(e.v)) keep.push(e)
    else if (granted(e.v)) chain = chain.then(() => within(e.go())).catch(() => {})
    else drop(e)
  }
  Q.push(...keep)
}
function discard() { Q.splice(0).forEach(drop) }
// One replayed request at a time, so they reach the gateway in their original order;
// a request that never settles does not stall the rest.
const within = (p) => Promise.race([Promise.resolve(p).catch(() => {}), new Promise((r) => setTimeout(r, 5e3))])
W.addEventListener('pagehide', discard)

// -- fetch -----------------------------------------------------------------------------
const cred = XO ? 'include' : 'same-origin'
if (of) {
  W.fetch = function (input, init) {
    const isReq = typeof Request !== 'undefined' && input instanceof Request
    const r = route(isReq ? input.url : input)
    if (!r) return of.apply(W, arguments)
    const send = async () => {
      let i = Object.assign({}, init)
      if (isReq) {
        const m = input.method
        i = Object.assign({
          method: m, headers: input.headers, credentials: input.credentials,
          cache: input.cache, redirect: input.redirect, integrity: input.integrity,
          keepalive: input.keepalive, signal: input.signal,
          mode: input.mode === 'navigate' ? 'cors' : input.mode,
          body: m === 'GET' || m === 'HEAD' ? undefined : await input.clone().arrayBuffer(),
        }, init)
      }
      // The consent cookie must reach a gateway on another origin.
      i.credentials = cred
      return of.call(W, r.u, i)
    }
    if (!pending(r.v)) return send()
    return new Promise((ok) => hold(r.v, () => { const p = send(); ok(p); return p },
      () => ok(new Response(null, {status: 204}))))
  }
}

// -- XMLHttpRequest: the URL at open, the hold at send ---------------------------------
const XP = W.XMLHttpRequest && XMLHttpRequest.prototype
if (XP) {
  const oo = XP.open, os = XP.send, xv = new WeakMap()
  XP.open = function (m, u) {
    const r = route(u)
    xv.delete(this)
    if (r) { arguments[1] = r.u; xv.set(this, r.v) }
    return oo.apply(this, arguments)
  }
  XP.send = function (b) {
    const x = this
    if (!xv.has(x)) return os.apply(x, arguments)
    if (XO) try { x.withCredentials = true } catch (e) {}
    if (!pending(xv.get(x))) return os.call(x, b)
    hold(xv.get(x), () => new Promise((ok) => {
      x.addEventListener('loadend', ok)
      os.call(x, b)
    }), () => x.abort())
  }
}

// -- sendBeacon (replayed as a keepalive fetch, whose end is known) --------------------
const simple = (d) => !(d instanceof Blob) || d.type === '' || /^(text\/plain|application\/x-www-form-urlencoded|multipart\/form-data)\b/.test(d.type)
if (ob) {
  N.sendBeacon = function (u, d) {
    const r = route(u)
    if (!r) return ob(u, d)
    if (!pending(r.v)) return ob(r.u, d)
    hold(r.v, () => of.call(W, r.u, {
      method: 'POST', body: d, keepalive: true, credentials: 'include',
      mode: XO && simple(d) ? 'no-cors' : 'cors',
    }))
    return true
  }
}

// -- elements: property setters, setAttribute, and markup added later -------------------
const TAGS = {IMG: 'src srcset', SCRIPT: 'src', IFRAME: 'src', LINK: 'href', SOURCE: 'src srcset', EMBED: 'src'}
// An iframe's document then comes from the gateway's origin: its relative URLs resolve
// there (docs/router.md). A site whose embeds need their own origin turns it off.
if (O.frames === false || attr('no-frames')) delete TAGS.IFRAME
const urlAttr = (el, n) => !!el.tagName && own(TAGS, el.tagName) && TAGS[el.tagName].split(' ').includes(n)
// Elements announce their end by load or error (a <link rel=preconnect> by neither).
const loaded = (el) => new Promise((ok) => { el.addEventListener('load', ok); el.addEventListener('error', ok) })

// `set(value)` stores the attribute; null when `value` names no listed host.
function setURL(el, n, val, set) {
  if (n === 'srcset') {
    let v = -1, hit = false
    const out = String(val).split(',').map((part) => {
      const m = /^(\s*)(\S+)(.*)$/.exec(part)
      const r = m && route(m[2])
      if (!r) return part
      hit = true
      if (v < 0 || pending(r.v)) v = r.v
      return m[1] + r.u + m[3]
    }).join(',')
    if (!hit) return set(val)
    return pending(v) ? hold(v, () => { set(out); return loaded(el) }) : set(out)
  }
  const r = route(val)
  if (!r) return set(val)
  if (!pending(r.v)) return set(r.u)
  hold(r.v, () => { set(r.u); return loaded(el) })
}

for (const t of Object.keys(TAGS)) {
  const P = W['HTML' + {IMG: 'Image', IFRAME: 'IFrame', SCRIPT: 'Script', LINK: 'Link', SOURCE: 'Source', EMBED: 'Embed'}[t] + 'Element']
  if (!P) continue
  for (const n of TAGS[t].split(' ')) {
    const d = Object.getOwnPropertyDescriptor(P.prototype, n)
    if (!d || !d.set) continue
    Object.defineProperty(P.prototype, n, Object.assign({}, d, {
      set(val) { setURL(this, n, val, (x) => d.set.call(this, x)) },
    }))
  }
}
const sa = Element.prototype.setAttribute
Element.prototype.setAttribute = function (name, val) {
  const n = String(name).toLowerCase()
  if (!urlAttr(this, n)) return sa.apply(this, arguments)
  setURL(this, n, val, (x) => sa.call(this, name, x))
}

// Elements made from markup (the HTML parser, innerHTML) set no property: rewrite them as
// they are added. A parser-inserted <script> has already started, and the browser's
// preload scanner may fetch markup before any script runs (docs/router.md: limits).
function scan(el) {
  if (el.nodeType !== 1) return
  for (const n of ['src', 'srcset', 'href']) {
    if (urlAttr(el, n) && el.hasAttribute(n)) {
      const val = el.getAttribute(n)
      const urls = n === 'srcset' ? val.split(',').map((p) => p.trim().split(/\s+/)[0]) : [val]
      if (urls.some(route)) {
        el.removeAttribute(n)
        setURL(el, n, val, (x) => sa.call(el, n, x))
      }
    }
  }
}
if (W.MutationObserver) {
  new MutationObserver((ms) => {
    for (const m of ms) {
      if (m.type === 'attributes') scan(m.target)
      else for (const a of m.addedNodes) {
        scan(a)
        if (a.querySelectorAll) a.querySelectorAll('img,script,iframe,link,source,embed').forEach(scan)
      }
    }
  }).observe(D.documentElement, {childList: true, subtree: true, attributes: true, attributeFilter: ['src', 'srcset', 'href']})
}

// -- window.consentGateway --------------------------------------------------------------
// Purposes as the page sees them: true granted, false denied, null not answered yet.
let shown = null
function learn(doc, changed) {
  const ps = (doc && doc.purposes) || {}
  st = {}
  shown = {}
  for (const p of Object.keys(ps)) {
    const s = ps[p], g = s.state === 'granted'
    st[p] = g ? 'g' : /^default:/.test(s.source || '') ? 'p' : 'd'
    shown[p] = st[p] === 'p' ? null : g
  }
  if (changed) {
    for (const cb of L.slice()) { try { cb(shown) } catch (e) {} }
    W.dispatchEvent(new CustomEvent('consentgateway:change', {detail: shown}))
    consentMode()
  }
  flush()
  return shown
}

// Google Consent Mode agrees with the gateway: a type is granted when every purpose that
// maps onto it (consent.signals.gcm) is.
function consentMode() {
  if (typeof W.gtag !== 'function') return
  const u = {}
  for (const p of Object.keys(C.g)) {
    for (const t of C.g[p]) u[t] = u[t] !== 'denied' && st[p] === 'g' ? 'granted' : 'denied'
  }
  if (Object.keys(u).length) W.gtag('consent', 'update', u)
}

function call(method, body) {
  const i = {method, credentials: 'include', headers: {Accept: 'application/json'}}
  if (body) { i.headers['Content-Type'] = 'application/json'; i.body = JSON.stringify(body) }
  return of.call(W, BASE + '/consent', i).then((r) => {
    if (!r.ok) throw new Error('consent-gateway: /consent answered ' + r.status)
    return r.json()
  })
}

let last = ''
W.consentGateway = {
  base: BASE,
  get() {
    return call('GET').then((doc) => {
      const s = JSON.stringify(doc.purposes)
      const changed = last !== '' && s !== last
      last = s
      return learn(doc, changed)
    })
  },
  set(purposes, opts) {
    const b = {purposes}
    if (opts && opts.notice) b.notice = opts.notice
    // opts.vendors: {ruleVendorId: false} answers for that vendor only
    if (opts && opts.vendors) b.vendors = opts.vendors
    return call('POST', b).then((doc) => { last = JSON.stringify(doc.purposes); return learn(doc, true) })
  },
  withdraw() {
    discard()
    return call('DELETE').then((doc) => { last = JSON.stringify(doc.purposes); return learn(doc, true) })
  },
  onChange(cb) {
    L.push(cb)
    return () => { const i = L.indexOf(cb); if (i >= 0) L.splice(i, 1) }
  },
  get held() { return Q.length },
}
W.consentGateway.ready = W.consentGateway.get().catch(() => null)

// -- Service Worker mode: same-origin deployments only (a worker is served by the site) --
if (O.sw && N.serviceWorker) {
  if (XO) console.warn('consent-gateway: a Service Worker needs the gateway on the site\'s origin')
  else N.serviceWorker.register(BASE + '/cg-sw.js', {scope: O.swScope || '/'}).catch(() => {})
}
