// consent-gateway admin: the live tail of the Blocked page.
//
// Opens an EventSource on /_admin/api/stream and puts each new decision-log record
// that matches the filter form's current values at the top of table#records, as a
// tr.record.live row. Cells are built with createElement + textContent only, never
// innerHTML: a record holds text a visitor chose (host, path), and it stays text.
(function () {
  "use strict";

  var table = document.getElementById("records");
  var status = document.getElementById("live-status");
  if (!table || !status || table.getAttribute("data-live") !== "on") {
    return;
  }
  if (!("EventSource" in window)) {
    status.textContent = "off (this browser has no EventSource)";
    return;
  }
  var tbody = table.tBodies[0];
  var form = document.getElementById("filters");
  // Bound the page: the oldest live rows go once there are this many.
  var MAX_LIVE_ROWS = 1000;

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = cls;
  }

  function current(name) {
    var field = form ? form.elements.namedItem(name) : null;
    return field && "value" in field ? field.value : "";
  }

  function matches(rec) {
    var vendor = current("vendor");
    var action = current("action");
    var purpose = current("purpose");
    var regime = current("regime");
    if (vendor && rec.vendor !== vendor) return false;
    if (action && rec.action !== action) return false;
    if (purpose && !(Array.isArray(rec.missing) && rec.missing.indexOf(purpose) >= 0)) return false;
    if (regime && rec.regime !== regime) return false;
    return true;
  }

  function text(value) {
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) return value.map(String).join(", ");
    return String(value);
  }

  function cell(cls, value) {
    var td = document.createElement("td");
    td.className = cls;
    td.textContent = text(value);
    return td;
  }

  function row(rec) {
    var tr = document.createElement("tr");
    tr.className = rec.report_only ? "record live report-only" : "record live";

    var time = document.createElement("time");
    var iso = text(rec.ts);
    time.setAttribute("datetime", iso.replace(/\.\d+Z$/, "Z"));
    time.textContent = iso.slice(0, 19).replace("T", " ");
    var timeCell = document.createElement("td");
    timeCell.className = "time";
    timeCell.appendChild(time);
    tr.appendChild(timeCell);

    var actionCell = cell("action", rec.action);
    actionCell.setAttribute("data-action", text(rec.action));
    tr.appendChild(actionCell);

    var target = rec.vendor ? text(rec.vendor) : "(unknown destination)";
    if (rec.vendor && rec.endpoint) target += "/" + text(rec.endpoint);
    tr.appendChild(cell("vendor", target));
    tr.appendChild(cell("missing", rec.missing));
    tr.appendChild(cell("regime", rec.regime));
    tr.appendChild(cell("method", rec.method));
    tr.appendChild(hostCell(rec.host));
    tr.appendChild(cell("path", rec.path));
    tr.appendChild(cell("stripped", rec.stripped));

    var reason = cell("reason", rec.reason);
    if (rec.report_only) {
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "report-only";
      reason.insertBefore(document.createTextNode(" "), reason.firstChild);
      reason.insertBefore(badge, reason.firstChild);
    }
    tr.appendChild(reason);
    // A live record is not stored yet (no id): its details link comes with a reload.
    tr.appendChild(cell("open", ""));
    if (rec.id) {
      var link = document.createElement("a");
      link.className = "detail-link";
      link.href = "record?id=" + encodeURIComponent(String(rec.id));
      link.textContent = "Details";
      tr.lastChild.appendChild(link);
    }
    return tr;
  }

  // As the server renders it: each dot-separated label kept whole, a break allowed only
  // after a dot, so a host name never wraps inside a label.
  function hostCell(value) {
    var td = document.createElement("td");
    td.className = "host";
    var host = document.createElement("span");
    host.className = "host";
    text(value).split(".").forEach(function (label, i) {
      if (i > 0) {
        host.appendChild(document.createTextNode("."));
        host.appendChild(document.createElement("wbr"));
      }
      var span = document.createElement("span");
      span.className = "label";
      span.textContent = label;
      host.appendChild(span);
    });
    td.appendChild(host);
    return td;
  }

  function prepend(rec) {
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.parentNode.removeChild(empty);
    tbody.insertBefore(row(rec), tbody.firstChild);
    var live = tbody.querySelectorAll("tr.record.live");
    for (var i = MAX_LIVE_ROWS; i < live.length; i++) {
      live[i].parentNode.removeChild(live[i]);
    }
  }

  setStatus("connecting…", "connecting");
  // Relative: the page is {admin}/, wherever the admin is mounted (server.base_path).
  var source = new EventSource("api/stream");
  source.onopen = function () {
    setStatus("live", "live");
  };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      setStatus("offline (reload the page; you may need to log in again)", "offline");
    } else {
      setStatus("reconnecting…", "offline");
    }
  };
  source.onmessage = function (event) {
    var rec;
    try {
      rec = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (rec && typeof rec === "object" && matches(rec)) {
      prepend(rec);
    }
  };
})();
