// consent-gateway router, Service Worker mode (docs/router.md). Served after the same
// prelude as cg.js. Registered by cg.js (data-sw) from the site's own origin: it sees
// every request of the pages in its scope, the preload scanner's and the parser's too,
// once it is active (not on the first page load). No hold and replay here: a worker
// cannot know what a page's banner is about to ask.
const BASE = self.location.href.replace(/\/cg-sw\.js(?:[?#].*)?$/, '')
const GWP = new URL(BASE).pathname.replace(/\/$/, '')
const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k)

function listed(h) {
  if (own(C.h, h)) return true
  for (let i = h.indexOf('.'); i > 0; i = h.indexOf('.', i + 1)) {
    if (own(C.w, h.slice(i + 1))) return true
  }
  return false
}

// A host the site added with a path prefix (rules.vendor_hosts: www.example.com/metrics)
// is the vendor's under that prefix only: the rest of it is the site's own.
const mounted = (x) => !own(C.m, x.hostname) || (x.pathname + '/').startsWith(C.m[x.hostname] + '/')

self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()))
self.addEventListener('fetch', (e) => {
  const q = e.request
  const x = new URL(q.url)
  if (q.mode === 'navigate' || !/^https?:$/.test(x.protocol) || x.port) return
  if (x.origin === self.location.origin && (x.pathname + '/').startsWith(GWP + '/')) return
  if (!listed(x.hostname) || !mounted(x)) return
  e.respondWith((async () => {
    const m = q.method
    return fetch(BASE + '/t/' + x.hostname + x.pathname + x.search, {
      method: m, headers: q.headers, credentials: 'same-origin', mode: 'same-origin',
      cache: q.cache, redirect: q.redirect === 'manual' ? 'follow' : q.redirect,
      referrer: q.referrer, referrerPolicy: q.referrerPolicy, keepalive: q.keepalive,
      body: m === 'GET' || m === 'HEAD' ? undefined : await q.arrayBuffer(),
    })
  })())
})
