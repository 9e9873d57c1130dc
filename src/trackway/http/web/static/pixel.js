  /* What trackway.js and blueshift.js share (the server puts it into each at the marker):
   * the browser's cookie, the pixel's query, and a queue that sends one pixel at a time. */
  var COOKIE = "_bs";
  var TWO_YEARS = 63072000;
  // Names the pixel reads as its own parameters; an attribute of such a name travels as JSON.
  var RESERVED = /^[xekurtz]$|_json$/;
  // A pixel that has not answered in this long no longer holds the next one back.
  var TURN_MS = 2000;

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
    var parts = document.cookie ? document.cookie.split(/;\s*/) : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (eq > 0 && parts[i].slice(0, eq) === name) {
        try {
          return decodeURIComponent(parts[i].slice(eq + 1));
        } catch (e) {
          return parts[i].slice(eq + 1);
        }
      }
    }
    return null;
  }

  // The browser's first-party cookie `_bs`: the one Blueshift's own script set, if it did.
  function browserCookie() {
    var value = readCookie(COOKIE);
    if (!value) {
      value = uuid();
      document.cookie = COOKIE + "=" + encodeURIComponent(value) + "; path=/; max-age=" +
        TWO_YEARS + "; SameSite=Lax";
    }
    return value;
  }

  // The pixel's parameters, as Blueshift's script names them: x the key, t Unix seconds, e the
  // event, r the referrer, z a cache-buster, k the cookie, u the page; then the attributes.
  function pixelQuery(key, event, attributes) {
    var params = [
      ["x", key], ["t", String(Math.floor(Date.now() / 1000))], ["e", event],
      ["r", document.referrer || ""], ["z", String(Math.floor(Math.random() * 1000000) + 1)],
      ["k", browserCookie()], ["u", window.location.href]
    ];
    var attrs = attributes || {};
    for (var name in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, name)) continue;
      var value = attrs[name];
      // A string goes as NAME=value unless the pixel would read NAME as one of its own
      // parameters or as NAME_json; then, like any other value, as NAME_json=JSON, so that a
      // number stays a number and a list a list.
      if (typeof value === "string" && !RESERVED.test(name)) {
        params.push([name, value]);
      } else {
        var json = JSON.stringify(value);
        if (json !== undefined) params.push([name + "_json", json]);
      }
    }
    return params.map(function (p) {
      return encodeURIComponent(p[0]) + "=" + encodeURIComponent(p[1]);
    }).join("&");
  }

  function pixelSender(base) {
    var sender = { base: base };
    var waiting = [];
    var busy = false;

    // One pixel in flight at a time, the next when it answers: the server receives, and stores,
    // the events in the order the page made them.
    function next() {
      if (busy || !waiting.length) return;
      var item = waiting.shift();
      var image = new Image(1, 1);
      var released = false;
      var timer = null;
      function release() {
        if (released) return;
        released = true;
        clearTimeout(timer);
        busy = false;
        next();
      }
      function settle(ok) {
        image.onload = image.onerror = null;
        item.resolve(ok);
        release();
      }
      busy = true;
      image.onload = function () { settle(image.naturalWidth > 0); };
      image.onerror = function () { settle(false); };
      timer = setTimeout(release, TURN_MS);
      image.src = item.url;
    }

    // Leaving the page: whatever still waits goes at once, in requests that outlive the page.
    window.addEventListener("pagehide", function () {
      var rest = waiting;
      waiting = [];
      rest.forEach(function (item) {
        if (window.fetch) {
          window.fetch(item.url, { mode: "no-cors", keepalive: true, credentials: "omit" })
            .then(function () { item.resolve(true); }, function () { item.resolve(false); });
        } else {
          new Image(1, 1).src = item.url;
          item.resolve(false);
        }
      });
    });

    // A promise of true once the pixel has answered (the event is then stored, or logged as
    // rejected), false if it could not be sent.
    sender.send = function (key, event, attributes) {
      var url = sender.base + "/unity.gif?" + pixelQuery(key, event, attributes);
      return new Promise(function (resolve) {
        waiting.push({ url: url, resolve: resolve });
        next();
      });
    };
    sender.cookie = browserCookie;
    return sender;
  }

  // The origin of the script being run (this file, wherever the page loaded it from).
  function scriptOrigin(script) {
    return script && script.src ? new URL(script.src, window.location.href).origin : "";
  }

  // Calls a page queued before the script arrived, [name, arg, …] each, run in order.
  function replay(queue, run) {
    if (!queue || typeof queue.length !== "number") return;
    for (var i = 0; i < queue.length; i++) run(queue[i]);
  }

  function caller(api, prefix) {
    return function (call) {
      var name = call && call[0];
      if (typeof name !== "string" || name === "push" || typeof api[name] !== "function") {
        if (window.console) window.console.warn(prefix + ": unknown call " + String(name));
        return undefined;
      }
      try {
        return api[name].apply(api, Array.prototype.slice.call(call, 1));
      } catch (error) {
        if (window.console) window.console.error(prefix + ": " + error.message);
        return undefined;
      }
    };
  }
