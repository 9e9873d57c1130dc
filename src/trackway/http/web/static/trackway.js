/*! trackway.js: send browser events to Trackway through its pixel. No dependencies.
 * <script src="https://YOUR-TRACKWAY/trackway.js" data-key="EVENT_API_KEY"></script>
 * Then: trackway.track("add_to_cart", {product_id: "p1", price: 9.99});
 *       trackway.identify({email: "ann@example.com", customer_id: "42"});
 * Loaded with `async`, calls made before it arrives are queued by this stub and sent, in
 * order, once it has:
 *   window.trackway = window.trackway || [];
 *   ["init", "track", "identify", "pageload"].forEach(function (m) {
 *     trackway[m] = trackway[m] || function () { trackway.push([m].concat([].slice.call(arguments))); };
 *   });
 * A first-party cookie `_bs` (a random UUID) identifies the browser; a `pageload` event is
 * sent when the script loads with a data-key. Strings travel as NAME=value, other values as
 * NAME_json=JSON. Each call returns a promise of true once Trackway has answered.
 */
(function (window, document) {
  "use strict";
  /* @include pixel.js */

  var script = document.currentScript;
  var sender = pixelSender(scriptOrigin(script));
  var key = script ? script.getAttribute("data-key") : null;
  var queued = window.trackway;
  if (queued && queued.loaded === "trackway.js") return; // loaded twice: the first one serves

  function send(event, attributes) {
    if (!key) {
      throw new Error("trackway: no key; call trackway.init(EVENT_API_KEY) first");
    }
    return sender.send(key, event, attributes);
  }

  var trackway = {
    init: function (eventKey, options) {
      key = eventKey;
      if (options && options.base) sender.base = options.base;
    },
    track: function (event, attributes) { return send(event, attributes); },
    identify: function (attributes) { return send("identify", attributes); },
    pageload: function (attributes) { return send("pageload", attributes); },
    cookie: sender.cookie,
    loaded: "trackway.js"
  };
  var run = caller(trackway, "trackway");
  trackway.push = run;
  window.trackway = trackway;
  if (key) {
    send("pageload", {title: document.title});
  }
  replay(queued, run);
})(window, document);
