/*! blueshift.js for Trackway: a page that carries Blueshift's standard web snippet sends its
 * events to Trackway when only the snippet's script URL points here:
 *   window._blueshiftid = "EVENT_API_KEY";
 *   window.blueshift = window.blueshift || [];
 *   if (blueshift.constructor === Array) { blueshift.load = function () { …stubs for
 *     config, identify, track, click, pageload, capture, retarget, live… }; }
 *   blueshift.load(); blueshift.pageload();
 *   …b.src = "//YOUR-TRACKWAY/blueshift.js" (instead of //cdn.getblueshift.com/blueshift.js)
 * Calls queued before this script arrived are sent in order, later ones at once, one pixel at
 * a time. The key is window._blueshiftid (or the argument of analytics.js's load(KEY)); the
 * browser is the first-party cookie `_bs`, Blueshift's own, kept if Blueshift's script set it.
 *   pageload(attributes)          → event "pageload"
 *   identify(attributes)          → event "identify": its email or customer_id is tied to the
 *                                   browser's cookie (the customer the cookie finds)
 *   track(event, attributes)      → that event
 *   click(attributes)             → event "click"
 *   config(options)               → kept in blueshift.options; nothing is sent
 *   capture, retarget, live       → Blueshift features Trackway does not have: nothing is sent
 * Each call returns a promise of true once Trackway has answered.
 */
(function (window, document) {
  "use strict";
  /* @include pixel.js */

  var script = document.currentScript;
  var sender = pixelSender(scriptOrigin(script));
  var queued = window.blueshift;
  if (queued && queued.loaded === "trackway") return; // loaded twice: the first one serves

  function send(event, attributes) {
    var key = window._blueshiftid;
    if (!key) {
      if (window.console) window.console.error("blueshift.js: window._blueshiftid (the event API key) is not set");
      return Promise.resolve(false);
    }
    return sender.send(String(key), event, attributes);
  }

  function nothing() { return Promise.resolve(false); }

  var blueshift = {
    // The snippet calls load() once more after this script is in; analytics.js passes the key.
    load: function (key) {
      if (key) window._blueshiftid = key;
    },
    config: function (options) {
      var given = options || {};
      for (var name in given) {
        if (Object.prototype.hasOwnProperty.call(given, name)) blueshift.options[name] = given[name];
      }
    },
    pageload: function (attributes) { return send("pageload", attributes); },
    identify: function (attributes) { return send("identify", attributes); },
    track: function (event, attributes) { return send(event, attributes); },
    click: function (attributes) { return send("click", attributes); },
    capture: nothing,
    retarget: nothing,
    live: nothing,
    cookie: sender.cookie,
    options: {},
    loaded: "trackway"
  };
  var run = caller(blueshift, "blueshift.js");
  blueshift.push = run;
  window.blueshift = blueshift;
  replay(queued, run);
})(window, document);
