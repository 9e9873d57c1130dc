/* The clickstream page of Trackway: live stream, customers, counts, errors. Plain JavaScript, no library.
 * Every value from the server reaches the page through textContent or an attribute, never as
 * markup, so whatever an event or a payload holds is shown, not run. */
(function () {
  "use strict";

  var ERROR_TYPES = [
    "es_index_error", "event_name_missing", "event_verification_error", "invalid_customer_id",
    "invalid_device_id", "invalid_email", "invalid_event_attributes", "invalid_product",
    "invalid_user_attributes", "missing_identifier", "missing_product", "parsing_error",
    "transaction_indexing_error", "unknown_error", "user_lock_error", "user_not_found_error"
  ];
  var IDENTIFIERS = ["customer_id", "retailer_customer_id", "email", "email_hash", "device_id", "cookie"];
  // Fields the rows show elsewhere (or that only the full JSON needs).
  var NOT_ATTRIBUTES = new Set(IDENTIFIERS.concat([
    "event", "event_uuid", "timestamp", "timestamp_epoch", "user_uuid", "account_uuid",
    "_bsft_doc_type", "_bsft_ts", "_bsft_type", "santized_at", "browser_platform", "browser_type",
    "browser_version", "user_agent", "verification_key", "event_signature", "sent_at"
  ]));
  var PALETTE = ["#4c6ef5", "#15aabf", "#40c057", "#fab005", "#fd7e14", "#e64980", "#7950f2",
    "#82c91e", "#12b886", "#228be6"];
  var ERROR_PALETTE = ["#e03131", "#f76707", "#f59f00", "#d6336c", "#ae3ec9", "#7048e8",
    "#1c7ed6", "#0ca678", "#74b816", "#c2255c"];
  var OTHER_COLOR = "#adb5bd";
  var MAX_SERIES = 9;
  var MAX_STREAM_ROWS = 500;
  var ERROR_PAGE = 200;
  var BADGE_SECONDS = 5;
  var SVG_NS = "http://www.w3.org/2000/svg";

  // -- small helpers ------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.setAttribute("class", value);
      else node.setAttribute(name, String(value));
    });
  }

  function append(node, children) {
    if (children === null || children === undefined) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function display(value) {
    if (typeof value === "string") return value;
    var text = JSON.stringify(value);
    return text === undefined ? String(value) : text;
  }

  function number(n) { return Number(n || 0).toLocaleString("en-US"); }

  // "2024-05-01T12:34:56.789Z" → ["2024-05-01", "12:34:56.789"]
  function splitTime(iso) {
    if (typeof iso !== "string") return ["", ""];
    var m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2}(?:\.\d+)?)/.exec(iso);
    return m ? [m[1], m[2]] : ["", iso];
  }

  function utcDay(date) { return date.toISOString().slice(0, 10); }

  function addDays(day, n) {
    var d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return utcDay(d);
  }

  function pillColor(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return "hsl(" + (h % 360) + ", 65%, 93%)";
  }

  function pillInk(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return "hsl(" + (h % 360) + ", 55%, 30%)";
  }

  function eventPill(name) {
    var label = display(name === undefined || name === null ? "(none)" : name);
    var pill = el("span", { className: "pill", text: label, title: label });
    pill.style.background = pillColor(label);
    pill.style.color = pillInk(label);
    return pill;
  }

  var toastTimer = null;
  function toast(message, bad) {
    var node = $("toast");
    node.textContent = message;
    node.className = "toast" + (bad ? " bad" : "");
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { node.hidden = true; }, 5000);
  }

  function api(path, options) {
    options = options || {};
    var init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (options.body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(path, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (doc) {
        if (!response.ok) {
          var why = doc && (doc.message || (doc.errors && JSON.stringify(doc.errors)));
          throw new Error("HTTP " + response.status + (why ? ": " + why : ""));
        }
        return doc;
      });
    });
  }

  // -- views --------------------------------------------------------------------------------

  var VIEWS = ["stream", "customers", "counts", "errors"];
  var loaded = {};

  // #customers/UUID opens that customer's profile in the Customers view.
  function route() {
    var hash = (location.hash || "#stream").slice(1);
    var name = hash.split("/")[0];
    var detail = hash.slice(name.length + 1);
    if (VIEWS.indexOf(name) < 0) name = "stream";
    VIEWS.forEach(function (view) {
      $("view-" + view).hidden = view !== name;
    });
    document.querySelectorAll(".tabs a").forEach(function (tab) {
      tab.setAttribute("aria-selected", tab.getAttribute("data-view") === name ? "true" : "false");
    });
    document.body.setAttribute("data-view", name);
    if (name === "counts" && !loaded.counts) { loaded.counts = true; loadCounts(); }
    if (name === "errors" && !loaded.errors) { loaded.errors = true; loadErrors(); }
    if (name === "customers") {
      if (!loaded.customers) { loaded.customers = true; loadCustomers(false); }
      showProfile(detail ? decodeURIComponent(detail) : null);
    }
  }

  function profileHref(uuid) { return "#customers/" + encodeURIComponent(uuid); }

  // -- live stream --------------------------------------------------------------------------

  var stream = {
    source: null, lastId: 0, paused: false, buffer: [], filter: "", shown: 0,
    ready: false, arrivals: [], retryTimer: null, stateTimer: null
  };

  function setConn(state, label) {
    var conn = $("conn");
    conn.setAttribute("data-state", state);
    $("conn-text").textContent = label;
  }

  function liveState() {
    if (stream.paused) setConn("paused", "Paused");
    else setConn("live", "Live");
  }

  function connect(resume) {
    if (stream.source) stream.source.close();
    clearTimeout(stream.retryTimer);
    // A fresh stream first sends the latest events, then `ready`; a resumed one only new ones.
    if (!resume || !stream.lastId) stream.ready = false;
    var params = new URLSearchParams();
    if (stream.filter) params.set("event", stream.filter);
    if (resume && stream.lastId) params.set("after", String(stream.lastId));
    var query = params.toString();
    var source = new EventSource("/clickstream/stream" + (query ? "?" + query : ""));
    stream.source = source;
    source.onopen = function () { clearTimeout(stream.stateTimer); liveState(); };
    source.addEventListener("ready", function () {
      stream.ready = true;
      document.body.setAttribute("data-stream", "ready");
      liveState();
    });
    source.addEventListener("skipped", function () {
      var notice = $("stream-skipped");
      notice.hidden = false;
      clearTimeout(notice._timer);
      notice._timer = setTimeout(function () { notice.hidden = true; }, 8000);
    });
    source.onmessage = function (message) {
      var id = Number(message.lastEventId) || 0;
      if (id && id <= stream.lastId) return;
      if (id) stream.lastId = id;
      var doc;
      try { doc = JSON.parse(message.data); } catch (e) { return; }
      var fresh = stream.ready;
      if (fresh) stream.arrivals.push(Date.now());
      if (stream.paused) {
        stream.buffer.push([doc, id]);
        if (stream.buffer.length > MAX_STREAM_ROWS) stream.buffer.shift();
        updatePauseButton();
      } else {
        addStreamRow(doc, id, fresh);
      }
      updateStreamStats();
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (a 401 or 503): try again in a while, from where the page is.
        setConn("error", "Disconnected, retrying…");
        stream.retryTimer = setTimeout(function () { connect(true); }, 3000);
      } else {
        // The server ends each stream after a while and the browser reconnects at once;
        // say so only when it takes long.
        clearTimeout(stream.stateTimer);
        stream.stateTimer = setTimeout(function () { setConn("connecting", "Reconnecting…"); }, 1500);
      }
    };
  }

  // One chip per identifier: retailer_customer_id is customer_id's other name (the stored
  // event carries both), and email_hash says nothing more than the email.
  function identifierChips(doc) {
    var chips = [];
    var shown = {};
    IDENTIFIERS.forEach(function (name) {
      var value = doc[name];
      if (value === null || value === undefined || value === "") return;
      if (name === "email_hash" && doc.email) return;
      var label = name === "retailer_customer_id" ? "customer_id" : name;
      if (shown[label]) return;
      shown[label] = true;
      chips.push(customerChip(doc, label, display(value), label + ": " + display(value)));
    });
    if (!chips.length && doc.user_uuid) {
      chips.push(customerChip(doc, null, String(doc.user_uuid).slice(0, 8) + "…", "user_uuid: " + doc.user_uuid));
    }
    return el("div", { className: "chips" }, chips);
  }

  // A chip opens the customer's profile (a link, so it also opens in a new tab).
  function customerChip(doc, label, value, title) {
    var uuid = typeof doc.user_uuid === "string" ? doc.user_uuid : "";
    var chip = el(uuid ? "a" : "span", {
      className: "chip", "data-identifier": label, "data-user-uuid": uuid || null,
      href: uuid ? profileHref(uuid) : null, title: title + (uuid ? " · open the profile" : "")
    }, [el("span", { className: "k", text: label || "user" }), el("span", { className: "v", text: value })]);
    chip.addEventListener("click", function (event) { event.stopPropagation(); });
    return chip;
  }

  function attributeSummary(doc) {
    var parts = [];
    var plain = [];
    Object.keys(doc).forEach(function (name) {
      if (NOT_ATTRIBUTES.has(name)) return;
      var value = doc[name];
      if (value === null || value === undefined || value === "") return;
      var text = display(value);
      if (text.length > 80) text = text.slice(0, 79) + "…";
      plain.push(name + "=" + text);
      if (parts.length >= 10) return;
      if (parts.length) parts.push(el("span", { className: "sep", text: "·" }));
      parts.push(el("span", { className: "k", text: name }));
      parts.push("=" + text);
    });
    return el("div", { className: "attrs", title: plain.join("\n") }, parts);
  }

  // The details of a row: when the event happened and when it was received, then its JSON.
  function eventDetail(doc) {
    var facts = [["Timestamp", doc.timestamp], ["Received", doc._bsft_ts], ["Event uuid", doc.event_uuid],
      ["Customer", doc.user_uuid]];
    var grid = el("dl", { className: "detail-grid" }, [].concat.apply([], facts.map(function (fact) {
      return fact[1] ? [el("dt", { text: fact[0] }), el("dd", { "data-fact": fact[0].toLowerCase(), text: display(fact[1]) })] : [];
    })));
    return el("div", null, [grid, el("pre", { className: "json", text: JSON.stringify(doc, null, 2) })]);
  }

  // One event as a row that opens its details; `withCustomer` adds the identifier chips.
  function eventGroup(doc, id, fresh, withCustomer) {
    // The event's own time (an imported or a late event shows when it happened); the time it
    // was received on hover and in the details.
    var time = splitTime(doc.timestamp || doc._bsft_ts);
    var row = el("tr", { className: "row" + (fresh ? " fresh" : ""), "data-id": id || null }, [
      el("td", { className: "time", title: "received " + (doc._bsft_ts || "") }, [
        el("span", { className: "date", text: time[0] + " " }), time[1]
      ]),
      el("td", { className: "event" }, eventPill(doc.event)),
      withCustomer ? el("td", { className: "customer" }, identifierChips(doc)) : null,
      el("td", null, attributeSummary(doc))
    ]);
    var group = el("tbody", { className: "event-row", "data-event": display(doc.event),
      "data-event-uuid": typeof doc.event_uuid === "string" ? doc.event_uuid : null }, row);
    row.addEventListener("click", function () {
      var open = group.querySelector("tr.detail");
      if (open) { group.removeChild(open); row.classList.remove("open"); return; }
      row.classList.add("open");
      group.appendChild(el("tr", { className: "detail" }, el("td", { colspan: withCustomer ? 4 : 3 }, eventDetail(doc))));
    });
    return group;
  }

  function addStreamRow(doc, id, fresh) {
    var group = eventGroup(doc, id, fresh, true);
    var table = $("stream-table");
    var first = table.tBodies[0];
    table.insertBefore(group, first || null);
    stream.shown += 1;
    while (table.tBodies.length > MAX_STREAM_ROWS) table.removeChild(table.tBodies[table.tBodies.length - 1]);
    $("stream-empty").hidden = true;
    rememberName(doc.event);
  }

  function updateStreamStats() {
    var now = Date.now();
    while (stream.arrivals.length && now - stream.arrivals[0] > 10000) stream.arrivals.shift();
    var rows = $("stream-table").tBodies.length;
    var rate = stream.arrivals.length / 10;
    $("stream-stats").textContent = number(rows) + " shown" +
      (rate ? " · " + (rate < 10 ? rate.toFixed(1) : Math.round(rate)) + " events/s" : "");
  }

  function updatePauseButton() {
    var button = $("pause");
    button.textContent = stream.paused
      ? "Resume" + (stream.buffer.length ? " (" + number(stream.buffer.length) + " new)" : "")
      : "Pause";
    button.classList.toggle("active", stream.paused);
  }

  function clearStream() {
    var table = $("stream-table");
    while (table.tBodies.length) table.removeChild(table.tBodies[0]);
    stream.buffer = [];
    $("stream-empty").hidden = false;
    updatePauseButton();
    updateStreamStats();
  }

  var knownNames = new Set();
  function rememberName(name) {
    if (typeof name !== "string" || knownNames.has(name)) return;
    knownNames.add(name);
    $("event-names").appendChild(el("option", { value: name }));
  }

  function setupStream() {
    $("pause").addEventListener("click", function () {
      stream.paused = !stream.paused;
      if (!stream.paused) {
        var pending = stream.buffer;
        stream.buffer = [];
        pending.forEach(function (item) { addStreamRow(item[0], item[1], true); });
      }
      updatePauseButton();
      liveState();
    });
    $("clear").addEventListener("click", clearStream);
    var filterTimer = null;
    $("stream-filter").addEventListener("input", function () {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(applyFilter, 350);
    });
    $("stream-filter").addEventListener("change", applyFilter);
    setInterval(updateStreamStats, 2000);
    connect(false);
  }

  function applyFilter() {
    var value = $("stream-filter").value.trim();
    if (value === stream.filter) return;
    stream.filter = value;
    stream.lastId = 0;
    clearStream();
    setConn("connecting", "Connecting…");
    connect(false);
  }

  // -- customers ----------------------------------------------------------------------------

  var CUSTOMER_PAGE = 50;
  var TIMELINE_PAGE = 50;
  var people = { q: "", next: null, request: 0, shown: 0 };
  var profile = { uuid: null, asked: null, before: null, request: 0, events: 0 };

  function customerName(c) {
    return c.customer_id || c.email || String(c.uuid).slice(0, 13) + "…";
  }

  function loadCustomers(more) {
    var params = new URLSearchParams();
    if (people.q) params.set("q", people.q);
    params.set("limit", String(CUSTOMER_PAGE));
    if (more && people.next) params.set("cursor", people.next);
    var request = ++people.request;
    document.body.setAttribute("data-customers", "loading");
    return api("/api/v1/customers/search?" + params.toString()).then(function (doc) {
      if (request !== people.request) return;
      renderCustomers(doc.customers || [], more);
      people.next = doc.next || null;
      $("customers-more").hidden = !people.next;
      document.body.setAttribute("data-customers", "ready");
    }).catch(function (error) {
      if (request !== people.request) return;
      document.body.setAttribute("data-customers", "failed");
      toast("Could not load the customers: " + error.message, true);
    });
  }

  function renderCustomers(list, more) {
    var table = $("customers-table");
    if (!more) {
      while (table.tBodies.length) table.removeChild(table.tBodies[0]);
      people.shown = 0;
    }
    var body = el("tbody");
    list.forEach(function (c) {
      var facts = [];
      if (c.customer_id) facts.push(el("span", { className: "chip" }, [el("span", { className: "k", text: "customer_id" }), el("span", { className: "v", text: c.customer_id })]));
      if (c.email) facts.push(el("span", { className: "chip" }, [el("span", { className: "k", text: "email" }), el("span", { className: "v", text: c.email })]));
      if (c.matched && c.matched.kind !== "customer_id" && c.matched.kind !== "email") {
        facts.push(el("span", { className: "chip matched" }, [el("span", { className: "k", text: c.matched.kind }), el("span", { className: "v", text: c.matched.value })]));
      }
      if (!facts.length) facts.push(el("span", { className: "muted", text: "anonymous" }));
      var seen = splitTime(c.last_seen_at);
      var row = el("tr", { className: "row customer-row", "data-uuid": c.uuid }, [
        el("td", null, [
          el("a", { className: "customer-name", href: profileHref(c.uuid), text: customerName(c), title: c.uuid }),
          el("div", { className: "chips" }, facts)
        ]),
        el("td", { className: "time" }, [el("span", { className: "date", text: seen[0] + " " }), seen[1]])
      ]);
      row.classList.toggle("open", c.uuid === profile.uuid);
      row.addEventListener("click", function () { location.hash = profileHref(c.uuid); });
      body.appendChild(row);
    });
    table.appendChild(body);
    people.shown += list.length;
    $("customers-empty").hidden = people.shown > 0;
    $("customers-info").textContent = people.shown
      ? number(people.shown) + (people.next ? "+" : "") + " shown · newest activity first"
      : "";
  }

  function markOpenCustomer() {
    document.querySelectorAll("#customers-table tr.customer-row").forEach(function (row) {
      row.classList.toggle("open", row.getAttribute("data-uuid") === profile.uuid);
    });
  }

  function showProfile(uuid) {
    if (!uuid) {
      profile.asked = profile.uuid = null;
      $("profile-body").hidden = true;
      $("profile-none").hidden = false;
      document.body.removeAttribute("data-profile");
      markOpenCustomer();
      return;
    }
    if (uuid === profile.asked) return;
    profile.asked = uuid;
    var request = ++profile.request;
    document.body.setAttribute("data-profile", "loading");
    var path = "/api/v1/customers/" + encodeURIComponent(uuid);
    api(path).then(function (doc) {
      if (request !== profile.request) return;
      renderProfile(doc.customer, uuid);
      return loadTimeline(false, request);
    }).then(function () {
      if (request === profile.request) document.body.setAttribute("data-profile", "ready");
    }).catch(function (error) {
      if (request !== profile.request) return;
      document.body.setAttribute("data-profile", "failed");
      $("profile-body").hidden = true;
      $("profile-none").hidden = false;
      toast("Could not load the customer: " + error.message, true);
    });
  }

  function kvList(node, entries, format) {
    clear(node);
    if (!entries.length) { node.appendChild(el("div", { className: "muted", text: "None." })); return; }
    entries.forEach(function (entry) {
      node.appendChild(el("dt", { text: entry[0], title: entry[0] }));
      node.appendChild(el("dd", { "data-name": entry[0] }, format(entry[1])));
    });
  }

  function rowsOf(tableId, rows, emptyText, columns) {
    var body = $(tableId).tBodies[0];
    clear(body);
    rows.forEach(function (row) { body.appendChild(row); });
    if (!rows.length) body.appendChild(el("tr", null, el("td", { colspan: columns, className: "muted", text: emptyText })));
  }

  function profileLink(uuid) {
    return el("a", { className: "uuid", href: profileHref(uuid), text: uuid, title: "open " + uuid });
  }

  function renderProfile(c, asked) {
    profile.uuid = c.uuid;
    $("profile-none").hidden = true;
    $("profile-body").hidden = false;
    $("profile-title").textContent = customerName(c);
    var note = $("profile-merged-note");
    note.hidden = asked.toLowerCase() === c.uuid;
    note.textContent = note.hidden ? "" : "Profile " + asked + " was merged into this one; its uuid answers with it.";
    var facts = [["uuid", c.uuid], ["customer_id", c.customer_id], ["email", c.email],
      ["created", c.created_at], ["updated", c.updated_at], ["last seen", c.last_seen_at]];
    var grid = $("profile-facts");
    clear(grid);
    facts.forEach(function (fact) {
      grid.appendChild(el("dt", { text: fact[0] }));
      grid.appendChild(el("dd", { "data-fact": fact[0], text: fact[1] === null || fact[1] === undefined ? "–" : display(fact[1]) }));
    });
    rowsOf("profile-identifiers", (c.identifiers || []).map(function (i) {
      return el("tr", { "data-kind": i.kind }, [
        el("td", { className: "muted", text: i.kind }),
        el("td", { className: "mono", text: i.value, title: i.value }),
        el("td", { className: "time", text: display(i.first_seen_at).replace("T", " ").replace("Z", "") })
      ]);
    }), "No identifiers.", 3);
    var attributes = c.attributes || {};
    kvList($("profile-attributes"), Object.keys(attributes).sort().map(function (k) { return [k, attributes[k]]; }),
      function (value) { return el("span", { className: "mono", text: display(value) }); });
    var groups = c.subscription_groups || {};
    kvList($("profile-subscriptions"), Object.keys(groups).sort().map(function (k) { return [k, groups[k]]; }),
      function (on) { return el("span", { className: "status " + (on ? "replayed" : "pending"), text: on ? "subscribed" : "unsubscribed" }); });
    rowsOf("profile-merges", (c.merged_profiles || []).map(function (m) {
      return el("tr", { "data-uuid": m.uuid }, [
        el("td", null, profileLink(m.uuid)),
        el("td", { className: "time", text: display(m.created_at).replace("T", " ").replace("Z", "") }),
        el("td", { className: "time", text: m.merged_at ? m.merged_at.replace("T", " ").replace("Z", "") : "–" })
      ]);
    }), "No profile was merged into this one.", 3);
    rowsOf("profile-conflicts", (c.conflicts || []).map(function (x) {
      var other = x.customer_uuid === c.uuid ? x.holder_uuid : x.customer_uuid;
      var how = x.customer_uuid === c.uuid ? "holds it" : "sent it";
      return el("tr", { "data-event-uuid": x.event_uuid }, [
        el("td", { className: "time", text: display(x.at).replace("T", " ").replace("Z", "") }),
        el("td", null, el("span", { className: "chip" }, [el("span", { className: "k", text: x.kind }), el("span", { className: "v", text: x.value })])),
        el("td", null, [profileLink(other), el("span", { className: "muted", text: " " + how })]),
        el("td", { className: "mono muted", text: x.event_uuid, title: x.event_uuid })
      ]);
    }), "No identity conflicts.", 4);
    var table = $("profile-events");
    while (table.tBodies.length) table.removeChild(table.tBodies[0]);
    profile.before = null;
    profile.events = 0;
    markOpenCustomer();
  }

  function loadTimeline(more, request) {
    var params = new URLSearchParams();
    params.set("limit", String(TIMELINE_PAGE));
    if (more && profile.before) params.set("before", profile.before);
    var path = "/api/v1/customers/" + encodeURIComponent(profile.uuid) + "/events?" + params.toString();
    $("profile-older").disabled = true;
    return api(path).then(function (doc) {
      if (request !== profile.request) return;
      var table = $("profile-events");
      (doc.events || []).forEach(function (event) { table.appendChild(eventGroup(event, null, false, false)); });
      profile.events += (doc.events || []).length;
      profile.before = doc.next || null;
      $("profile-older").hidden = !profile.before;
      $("profile-older").disabled = false;
      $("profile-events-empty").hidden = profile.events > 0;
      $("profile-events-info").textContent = profile.events
        ? "· " + number(profile.events) + (profile.before ? "+" : "") +
          (profile.events === 1 && !profile.before ? " event" : " events") + ", newest first"
        : "";
    });
  }

  function setupCustomers() {
    var searchTimer = null;
    function search() {
      var q = $("customer-search").value.trim();
      if (q === people.q) return;
      people.q = q;
      people.next = null;
      loadCustomers(false);
    }
    $("customer-search").addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(search, 250);
    });
    $("customer-search").addEventListener("change", search);
    $("customers-more").addEventListener("click", function () { loadCustomers(true); });
    $("profile-older").addEventListener("click", function () {
      var request = profile.request;
      document.body.setAttribute("data-profile", "loading");
      loadTimeline(true, request).then(function () {
        if (request === profile.request) document.body.setAttribute("data-profile", "ready");
      }).catch(function (error) { toast("Could not load the events: " + error.message, true); });
    });
    $("profile-close").addEventListener("click", function () { location.hash = "#customers"; });
  }

  // -- counts -------------------------------------------------------------------------------

  var counts = { from: null, to: null };

  function setRange(days) {
    var to = utcDay(new Date());
    $("range-to").value = to;
    $("range-from").value = addDays(to, -(days - 1));
    document.querySelectorAll("#range-presets .btn").forEach(function (button) {
      button.classList.toggle("active", Number(button.getAttribute("data-days")) === days);
    });
  }

  // Whole UTC days, the last one included: summary.json takes days as they are.
  function summaryUrl(from, to) {
    return "/api/v1/event/summary.json?timestamp_start=" + encodeURIComponent(from) +
      "&timestamp_end=" + encodeURIComponent(to);
  }

  function loadCounts() {
    var from = $("range-from").value;
    var to = $("range-to").value;
    if (!from || !to) return;
    if (from > to) { var t = from; from = to; to = t; }
    counts.from = from;
    counts.to = to;
    document.body.setAttribute("data-counts", "loading");
    api(summaryUrl(from, to)).then(function (doc) {
      renderCounts(doc, from);
      document.body.setAttribute("data-counts", "ready");
    }).catch(function (error) {
      document.body.setAttribute("data-counts", "failed");
      toast("Could not load the counts: " + error.message, true);
    });
  }

  function renderCounts(doc, from) {
    var chart = (doc.events_chart_stats || [{}])[0] || {};
    var labels = chart.timelapse || [];
    var days = labels.map(function (_, i) { return addDays(from, i); });
    var events = chart.events || {};
    var archives = chart.archives || {};
    var errors = chart.error || {};
    var sum = function (values) { return values.reduce(function (a, b) { return a + b; }, 0); };
    var eventSeries = Object.keys(events).map(function (name) { return { name: name, values: events[name] }; });
    var errorSeries = Object.keys(errors)
      .map(function (name) { return { name: name, values: errors[name] }; })
      .filter(function (s) { return sum(s.values) > 0; });
    var totalEvents = eventSeries.concat(Object.keys(archives).map(function (n) { return { values: archives[n] }; }))
      .reduce(function (a, s) { return a + sum(s.values); }, 0);
    var totalErrors = errorSeries.reduce(function (a, s) { return a + sum(s.values); }, 0);
    $("total-events").textContent = number(totalEvents);
    $("total-errors").textContent = number(totalErrors);
    var stats = doc.stats || {};
    $("total-names").textContent = number(Object.keys(stats).length);
    barChart($("events-chart"), $("events-legend"), labels, days, eventSeries, PALETTE, "No events in this range.");
    if (Object.keys(archives).length) {
      $("events-legend").appendChild(el("span", { className: "muted", text: "Archived names are counted in the table, not charted." }));
    }
    barChart($("errors-chart"), $("errors-legend"), labels, days, errorSeries, ERROR_PALETTE, "No errors in this range.");
    renderNames(stats);
  }

  function niceStep(raw) {
    if (raw <= 1) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var scaled = raw / power;
    var step = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
    return step * power;
  }

  function barChart(container, legend, labels, days, series, palette, emptyText) {
    clear(container);
    clear(legend);
    var totalOf = function (s) { return s.values.reduce(function (a, b) { return a + b; }, 0); };
    series = series.slice().sort(function (a, b) { return totalOf(b) - totalOf(a) || (a.name < b.name ? -1 : 1); });
    if (series.length > MAX_SERIES + 1) {
      var rest = series.slice(MAX_SERIES);
      var values = labels.map(function (_, i) { return rest.reduce(function (a, s) { return a + (s.values[i] || 0); }, 0); });
      series = series.slice(0, MAX_SERIES).concat([{ name: "other (" + rest.length + ")", values: values, other: true }]);
    }
    var n = labels.length;
    var totals = labels.map(function (_, i) { return series.reduce(function (a, s) { return a + (s.values[i] || 0); }, 0); });
    var max = Math.max.apply(null, [0].concat(totals));
    if (!n || max === 0) {
      container.appendChild(el("div", { className: "none", text: emptyText }));
      return;
    }
    var width = Math.max(container.clientWidth || 0, 480);
    var height = 240;
    var m = { left: 48, right: 8, top: 18, bottom: 26 };
    var plotW = width - m.left - m.right;
    var plotH = height - m.top - m.bottom;
    var step = niceStep(max / 4);
    var yMax = Math.ceil(max / step) * step;
    var y = function (v) { return m.top + plotH - (v / yMax) * plotH; };
    var band = plotW / n;
    var barW = Math.max(2, Math.min(46, band * 0.72));
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "bar chart", width: width, height: height });
    var axis = svg("g", { className: "axis" });
    for (var v = 0; v <= yMax; v += step) {
      axis.appendChild(svg("line", { className: "grid-line", x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }));
      axis.appendChild(svg("text", { x: m.left - 8, y: y(v) + 4, "text-anchor": "end", text: number(v) }));
    }
    root.appendChild(axis);
    var every = Math.ceil(n / 14);
    var labelsGroup = svg("g", { className: "labels" });
    var bars = svg("g", { className: "bars" });
    labels.forEach(function (label, i) {
      var x = m.left + band * i + (band - barW) / 2;
      var base = 0;
      series.forEach(function (s, k) {
        var value = s.values[i] || 0;
        if (!value) return;
        var color = s.other ? OTHER_COLOR : palette[k % palette.length];
        var top = y(base + value);
        bars.appendChild(svg("rect", {
          className: "bar", x: x.toFixed(1), y: top.toFixed(1), width: barW.toFixed(1),
          height: Math.max(0.5, y(base) - top).toFixed(1), fill: color, rx: 1.5,
          "data-series": s.name, "data-day": days[i], "data-value": value
        }, svg("title", { text: days[i] + " · " + s.name + ": " + number(value) })));
        base += value;
      });
      if (totals[i] && n <= 31) {
        labelsGroup.appendChild(svg("text", {
          className: "total", x: x + barW / 2, y: y(totals[i]) - 5, "text-anchor": "middle",
          "data-day": days[i], "data-total": totals[i], text: number(totals[i])
        }));
      }
      if (i % every === 0) {
        labelsGroup.appendChild(svg("text", { x: x + barW / 2, y: height - 8, "text-anchor": "middle", text: label }));
      }
    });
    root.appendChild(bars);
    root.appendChild(labelsGroup);
    container.appendChild(root);
    series.forEach(function (s, k) {
      var swatch = el("span", { className: "swatch" });
      swatch.style.background = s.other ? OTHER_COLOR : palette[k % palette.length];
      legend.appendChild(el("span", { className: "item", "data-series": s.name }, [
        swatch, el("span", { text: s.name }), el("span", { className: "count", text: number(totalOf(s)) })
      ]));
    });
  }

  function renderNames(stats) {
    var body = $("names-rows");
    clear(body);
    var names = Object.keys(stats).sort(function (a, b) {
      return (stats[b].count - stats[a].count) || (a < b ? -1 : 1);
    });
    names.forEach(function (name) {
      var s = stats[name];
      rememberName(name);
      body.appendChild(el("tr", { "data-name": name }, [
        el("td", null, eventPill(name)),
        el("td", { text: display(s.display_name) }),
        el("td", { className: "muted", text: s.type === "custom_event" ? "custom" : display(s.type) }),
        el("td", { className: "num", text: number(s.count) }),
        el("td", null, s.archived ? el("span", { className: "status pending", text: "archived" }) : el("span", { className: "muted", text: "–" }))
      ]));
    });
    if (!names.length) {
      body.appendChild(el("tr", null, el("td", { colspan: 5, className: "empty", text: "No event names yet." })));
    }
  }

  function setupCounts() {
    setRange(7);
    document.querySelectorAll("#range-presets .btn").forEach(function (button) {
      button.addEventListener("click", function () {
        setRange(Number(button.getAttribute("data-days")));
        loadCounts();
      });
    });
    ["range-from", "range-to"].forEach(function (id) {
      $(id).addEventListener("change", function () {
        document.querySelectorAll("#range-presets .btn").forEach(function (b) { b.classList.remove("active"); });
        loadCounts();
      });
    });
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () { if (loaded.counts && !$("view-counts").hidden) loadCounts(); }, 250);
    });
  }

  // -- errors -------------------------------------------------------------------------------

  var errs = { cursors: [null], page: 0, selected: new Set(), next: null, confirmTimer: null };

  function errorFilter() {
    var params = new URLSearchParams();
    var type = $("error-type").value;
    var day = $("error-day").value;
    var status = $("error-status").value;
    if (type) params.set("type", type);
    if (day) params.set("day", day);
    if (status && status !== "all") params.set("status", status);
    return params;
  }

  function loadErrors() {
    var params = errorFilter();
    params.set("limit", String(ERROR_PAGE));
    var before = errs.cursors[errs.page];
    if (before) params.set("before", before);
    document.body.setAttribute("data-errors", "loading");
    return api("/api/v1/errors?" + params.toString()).then(function (doc) {
      renderErrors(doc);
      document.body.setAttribute("data-errors", "ready");
    }).catch(function (error) {
      document.body.setAttribute("data-errors", "failed");
      toast("Could not load the errors: " + error.message, true);
    });
  }

  function messageList(errors) {
    var items = [];
    Object.keys(errors || {}).forEach(function (field) {
      (errors[field] || []).forEach(function (message) {
        items.push(el("li", { title: field + ": " + display(message) }, [
          el("span", { className: "field-name", text: field }), " " + display(message)
        ]));
      });
    });
    return el("ul", { className: "messages" }, items);
  }

  function prettyPayload(raw) {
    try { return JSON.stringify(JSON.parse(raw), null, 2); } catch (e) { return raw; }
  }

  function errorDetail(error) {
    var grid = el("dl", { className: "detail-grid" }, [
      el("dt", { text: "Error id" }), el("dd", { text: String(error.id) }),
      el("dt", { text: "Received" }), el("dd", { text: error.received_at }),
      el("dt", { text: "Type" }), el("dd", { text: error.error_type }),
      el("dt", { text: "Messages" }), el("dd", null, messageList(error.errors)),
      el("dt", { text: "Status" }), el("dd", { text: error.status + (error.replayed_at ? " at " + error.replayed_at : "") }),
      error.replayed_event_uuid ? el("dt", { text: "Stored as event" }) : null,
      error.replayed_event_uuid ? el("dd", { text: error.replayed_event_uuid }) : null,
      error.retried_at ? el("dt", { text: "Last replay" }) : null,
      error.retried_at ? el("dd", { text: error.retried_at }) : null,
      el("dt", { text: "Payload" }), el("dd", { text: error.raw_truncated ? "(first part; loading all…)" : "" })
    ]);
    var pre = el("pre", { className: "json", text: prettyPayload(error.raw) });
    if (error.raw_truncated) {
      api("/api/v1/errors/" + encodeURIComponent(error.id)).then(function (full) {
        pre.textContent = prettyPayload(full.raw);
        grid.lastChild.textContent = "";
      }).catch(function () {});
    }
    return el("div", null, [grid, pre]);
  }

  function renderErrors(doc) {
    var table = $("errors-table");
    while (table.tBodies.length) table.removeChild(table.tBodies[0]);
    var list = doc.errors || [];
    list.forEach(function (error) {
      var check = el("input", { type: "checkbox", "aria-label": "Select error " + error.id, "data-id": error.id });
      check.disabled = error.status === "replayed";
      check.checked = errs.selected.has(error.id);
      check.addEventListener("click", function (event) { event.stopPropagation(); });
      check.addEventListener("change", function () {
        if (check.checked) errs.selected.add(error.id); else errs.selected.delete(error.id);
        updateSelection();
      });
      var time = splitTime(error.received_at);
      var row = el("tr", { className: "row", "data-id": error.id, "data-status": error.status }, [
        el("td", { className: "check" }, check),
        el("td", { className: "time" }, [el("span", { className: "date", text: time[0] + " " }), time[1]]),
        el("td", null, el("span", { className: "pill error", text: error.error_type, title: error.error_type })),
        el("td", null, messageList(error.errors)),
        el("td", null, el("div", { className: "payload", text: error.raw, title: error.raw.slice(0, 500) })),
        el("td", null, el("span", {
          className: "status " + error.status, text: error.status,
          title: error.replayed_at ? "replayed " + error.replayed_at : (error.retried_at ? "last replay " + error.retried_at : "")
        }))
      ]);
      var group = el("tbody", { className: "error-row" }, row);
      row.addEventListener("click", function () {
        var open = group.querySelector("tr.detail");
        if (open) { group.removeChild(open); row.classList.remove("open"); return; }
        row.classList.add("open");
        group.appendChild(el("tr", { className: "detail" }, el("td", { colspan: 6 }, errorDetail(error))));
      });
      table.appendChild(group);
    });
    $("errors-empty").hidden = list.length > 0;
    errs.next = doc.next || null;
    var first = errs.page * ERROR_PAGE;
    var total = doc.total_capped ? number(doc.total) + "+" : number(doc.total);
    $("page-info").textContent = list.length
      ? number(first + 1) + "–" + number(first + list.length) + " of " + total
      : "";
    $("older").disabled = !errs.next;
    $("newer").disabled = errs.page === 0;
    $("select-all").checked = false;
    var query = errorFilter();
    ["csv", "ndjson"].forEach(function (format) {
      var params = new URLSearchParams(query);
      params.set("format", format);
      $("download-" + format).setAttribute("href", "/api/v1/errors?" + params.toString());
    });
    updateSelection();
  }

  function updateSelection() {
    var n = errs.selected.size;
    $("selection-count").textContent = n
      ? number(n) + " selected"
      : "Select errors to replay them through today's rules.";
    $("replay-selected").disabled = n === 0;
    var type = $("error-type").value;
    var button = $("replay-type");
    button.disabled = !type;
    button.classList.remove("confirm");
    button.textContent = type ? "Replay all pending " + type : "Replay all pending of this type";
  }

  function refreshBadge() {
    return api("/api/v1/errors?status=pending&limit=1").then(function (doc) {
      var badge = $("pending-badge");
      badge.hidden = !doc.total;
      badge.textContent = doc.total_capped ? number(doc.total) + "+" : number(doc.total);
      badge.title = number(doc.total) + " pending errors";
    }).catch(function () {});
  }

  // The badge follows new errors while the page is in view (one small count a few seconds).
  function watchBadge() {
    var busy = false;
    setInterval(function () {
      if (busy || document.visibilityState === "hidden") return;
      busy = true;
      refreshBadge().then(function () { busy = false; });
    }, BADGE_SECONDS * 1000);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") refreshBadge();
    });
  }

  function showReplay(doc) {
    var parts = [number(doc.replayed) + " replayed"];
    if (doc.failed) parts.push(number(doc.failed) + " still failing");
    if (doc.skipped) parts.push(number(doc.skipped) + " replayed before");
    if (doc.missing) parts.push(number(doc.missing) + " not found");
    var result = $("replay-result");
    result.textContent = parts.join(" · ");
    result.style.color = doc.failed ? "var(--warn)" : "var(--ok)";
  }

  function replay(body) {
    $("replay-selected").disabled = true;
    $("replay-type").disabled = true;
    $("replay-result").textContent = "Replaying…";
    $("replay-result").style.color = "";
    return api("/api/v1/errors/replay", { body: body }).then(function (doc) {
      errs.selected.clear();
      showReplay(doc);
      refreshBadge();
      return loadErrors();
    }).catch(function (error) {
      $("replay-result").textContent = "";
      toast("Replay failed: " + error.message, true);
      updateSelection();
    });
  }

  function resetErrors() {
    errs.cursors = [null];
    errs.page = 0;
    errs.selected.clear();
    $("replay-result").textContent = "";
    loadErrors();
  }

  function setupErrors() {
    var select = $("error-type");
    ERROR_TYPES.forEach(function (type) { select.appendChild(el("option", { value: type, text: type })); });
    ["error-type", "error-day", "error-status"].forEach(function (id) {
      $(id).addEventListener("change", resetErrors);
    });
    $("older").addEventListener("click", function () {
      if (!errs.next) return;
      errs.cursors[errs.page + 1] = errs.next;
      errs.page += 1;
      loadErrors();
    });
    $("newer").addEventListener("click", function () {
      if (errs.page === 0) return;
      errs.page -= 1;
      loadErrors();
    });
    $("select-all").addEventListener("change", function () {
      var on = $("select-all").checked;
      document.querySelectorAll("#errors-table tbody input[type=checkbox]").forEach(function (box) {
        if (box.disabled) return;
        box.checked = on;
        var id = Number(box.getAttribute("data-id"));
        if (on) errs.selected.add(id); else errs.selected.delete(id);
      });
      updateSelection();
    });
    $("replay-selected").addEventListener("click", function () {
      replay({ ids: Array.from(errs.selected) });
    });
    $("replay-type").addEventListener("click", function () {
      var button = $("replay-type");
      var type = $("error-type").value;
      if (!type) return;
      if (!button.classList.contains("confirm")) {
        button.classList.add("confirm");
        button.textContent = "Click again to replay every pending " + type;
        clearTimeout(errs.confirmTimer);
        errs.confirmTimer = setTimeout(updateSelection, 5000);
        return;
      }
      clearTimeout(errs.confirmTimer);
      var body = { type: type };
      if ($("error-day").value) body.day = $("error-day").value;
      replay(body);
    });
  }

  // -- start --------------------------------------------------------------------------------

  function start() {
    setupStream();
    setupCustomers();
    setupCounts();
    setupErrors();
    window.addEventListener("hashchange", route);
    route();
    refreshBadge();
    watchBadge();
    // Names for the stream's filter, from the last 30 days.
    var to = utcDay(new Date());
    api(summaryUrl(addDays(to, -29), to)).then(function (doc) {
      Object.keys(doc.stats || {}).sort().forEach(rememberName);
    }).catch(function () {});
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
