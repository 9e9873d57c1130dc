/*! trackway.js: send browser events to Trackway through its pixel. No dependencies.
 * <script src="https://YOUR-TRACKWAY/trackway.js" data-key="EVENT_API_KEY" async></script>
 * Then: trackway.track("add_to_cart", {product_id: "p1", price: 9.99});
 *       trackway.identify({email: "ann@example.com", customer_id: "42"});
 * A first-party cookie `_bs` (a random UUID) identifies the browser; a `pageload` event is
 * sent when the script loads. Strings travel as NAME=value, other values as NAME_json=JSON.
 */
(function (window, document) {
  "use strict";
  var COOKIE = "_bs";
  var TWO_YEARS = 63072000;
  var RESERVED = /^[xekurtz]$|_json$/;
  var script = document.currentScript;
  var base = script ? new URL(script.src, window.location.href).origin : "";
  var key = script ? script.getAttribute("data-key") : null;

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
      hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) {
        return decodeURIComponent(parts[i].slice(eq + 1));
      }
    }
    return null;
  }

  function browserCookie() {
    var value = readCookie(COOKIE);
    if (!value) {
      value = uuid();
      document.cookie = COOKIE + "=" + encodeURIComponent(value) + "; path=/; max-age=" +
        TWO_YEARS + "; SameSite=Lax";
    }
    return value;
  }

  function send(event, attributes) {
    if (!key) {
      throw new Error("trackway: no key; call trackway.init(EVENT_API_KEY) first");
    }
    var params = [
      ["x", key], ["e", event], ["k", browserCookie()], ["u", window.location.href],
      ["r", document.referrer || ""], ["t", String(Math.floor(Date.now() / 1000))],
      ["z", String(Math.random()).slice(2)]
    ];
    var attrs = attributes || {};
    for (var name in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, name)) continue;
      var value = attrs[name];
      // A string goes as NAME=value unless the pixel would read NAME as one of its own
      // parameters (x e k u r t z) or as NAME_json; then, like any other value, as JSON.
      if (typeof value === "string" && !RESERVED.test(name)) {
        params.push([name, value]);
      } else {
        var json = JSON.stringify(value);
        if (json !== undefined) params.push([name + "_json", json]);
      }
    }
    var query = params.map(function (p) {
      return encodeURIComponent(p[0]) + "=" + encodeURIComponent(p[1]);
    }).join("&");
    var image = new Image(1, 1);
    image.src = base + "/unity.gif?" + query;
    return image;
  }

  var trackway = {
    init: function (eventKey, options) {
      key = eventKey;
      if (options && options.base) base = options.base;
    },
    track: function (event, attributes) { return send(event, attributes); },
    identify: function (attributes) { return send("identify", attributes); },
    cookie: browserCookie
  };
  window.trackway = trackway;
  if (key) {
    send("pageload", {title: document.title});
  }
})(window, document);
