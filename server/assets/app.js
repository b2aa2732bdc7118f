// Writes the page's times in the browser's time zone, counts down running tickets and keeps
// the page's live parts ([data-live] with an id) up to date from the server's event stream.
(function () {
  "use strict";

  var TIME = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  var DATE_TIME = { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };

  // <time datetime="…Z" data-format="time|datetime">: the server wrote UTC; the reader's own
  // clock is what they compare with.
  function localTimes(root) {
    root.querySelectorAll("time[data-format]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      var sameDay = at.toDateString() === new Date().toDateString();
      var format = el.getAttribute("data-format") === "time" || sameDay ? TIME : DATE_TIME;
      el.textContent = at.toLocaleString(undefined, format);
      el.title = at.toString();
    });
  }

  // As the server writes it (views::time_left): "25 min", "2 h 05 min".
  function timeLeft(seconds) {
    var minutes = Math.ceil(Math.max(seconds, 0) / 60);
    if (minutes < 60) return minutes + " min";
    var rest = minutes % 60;
    return Math.floor(minutes / 60) + " h " + (rest < 10 ? "0" : "") + rest + " min";
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-expires-at]").forEach(function (el) {
      var left = Number(el.getAttribute("data-expires-at")) - now;
      el.textContent = left > 0 ? timeLeft(left) + " left" : "time is up";
    });
  }

  // Swaps the live parts of a fresh copy of the page in, those that changed only. Not while a
  // finger or the mouse is down: the button under it would be replaced before its click, and
  // the tap lost. The newest copy waits until the pointer is up and the click is through.
  var served = {};
  var pressed = false;
  var waiting = null;
  function swap(fresh) {
    if (pressed) {
      waiting = fresh;
      return;
    }
    // A list whose rows came or went is swapped whole; its live parts are then up to date.
    document.querySelectorAll("[data-live-rows][id]").forEach(function (old) {
      var now = fresh.getElementById(old.id);
      if (!now || rowsOf(old) === rowsOf(now)) return;
      now.querySelectorAll("[data-live][id]").forEach(function (part) {
        served[part.id] = part.outerHTML;
      });
      put(old, now);
    });
    document.querySelectorAll("[data-live][id]").forEach(function (old) {
      var now = fresh.getElementById(old.id);
      if (!now || served[old.id] === now.outerHTML) return;
      served[old.id] = now.outerHTML;
      put(old, now);
    });
    pairedYet();
    localTimes(document);
    tick();
    document.documentElement.setAttribute("data-refreshed", String(Date.now()));
  }
  // The Devices page's pairing code, once its box has paired: the code is used up.
  function pairedYet() {
    var panel = document.getElementById("pairing");
    if (!panel) return;
    var name = panel.getAttribute("data-name");
    var since = Number(panel.getAttribute("data-since"));
    var paired = Array.prototype.some.call(document.querySelectorAll("[data-row][data-name]"),
      function (row) {
        var cell = row.querySelector("[data-paired]");
        return row.getAttribute("data-name") === name && cell &&
          Number(cell.getAttribute("data-paired")) >= since;
      });
    if (!paired) return;
    panel.querySelector(".pairing-code-parts").hidden = true;
    panel.querySelector(".pairing-done").hidden = false;
    panel.classList.replace("alert-info", "alert-success");
  }
  function rowsOf(list) {
    return Array.prototype.map.call(list.querySelectorAll("[data-row]"), function (row) {
      return row.getAttribute("data-row");
    }).join(",");
  }
  function put(old, now) {
    now.querySelectorAll('input[name="csrf_token"]').forEach(function (input) {
      if (csrf) input.value = csrf.content;
    });
    old.replaceWith(now);
  }
  document.addEventListener("pointerdown", function () { pressed = true; }, true);
  function released() {
    pressed = false;
    if (waiting === null) return;
    var fresh = waiting;
    waiting = null;
    setTimeout(function () { swap(fresh); }, 400);
  }
  document.addEventListener("pointerup", released, true);
  document.addEventListener("pointercancel", released, true);

  // Re-reads this page and swaps in its live parts. One read at a time; changes that come
  // during a read make one more read after it. A read after a change names it: every open
  // page's read of that change gets one copy, rendered once, with no anti-CSRF token in its
  // forms: this page's own goes in.
  var reading = false;
  var again = false;
  var change = null;
  var csrf = document.querySelector('meta[name="csrf-token"]');
  function refresh(event) {
    if (event && event.type === "change") change = event.data;
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    var headers = change === null ? {} : { "X-Live-Change": change };
    fetch(location.href, { credentials: "same-origin", cache: "no-store", headers: headers })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          location.assign(response.url);
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) swap(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () {})
      .then(function () {
        reading = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  // One stream per open page; the browser reconnects it by itself, and a page that was cut
  // off reads itself again once back, for what it missed.
  // NOTE: over HTTP/1.1 a browser opens at most six connections to one server, and each
  // stream holds one: with more tabs open the pages would stall. A hidden tab gives its
  // stream up and reads itself again when it is shown.
  function listen() {
    if (!window.EventSource || !document.querySelector("[data-live][id], [data-live-rows][id]")) return;
    var stream = null;
    var cutOff = false;
    var state = function (value) {
      document.documentElement.setAttribute("data-live-stream", value);
    };
    function open() {
      stream = new EventSource("/events");
      stream.addEventListener("ready", function () {
        state("open");
        // What was missed is read afresh, not from a copy of a change before the cut.
        if (cutOff) {
          change = null;
          refresh();
        }
        cutOff = false;
      });
      stream.addEventListener("change", refresh);
      stream.addEventListener("error", function () {
        cutOff = true;
        state("reconnecting");
      });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden && stream) {
        stream.close();
        stream = null;
        state("paused");
      } else if (!document.hidden && !stream) {
        cutOff = true;
        open();
      }
    });
    window.addEventListener("pagehide", function () {
      if (stream) stream.close();
    });
    if (document.hidden) {
      // Opened in a background tab: it listens once shown, reading itself first.
      state("paused");
    } else {
      open();
    }
  }

  localTimes(document);
  tick();
  setInterval(tick, 1000);
  listen();
})();
