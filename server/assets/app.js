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

  // Re-reads this page and swaps in its live parts. One read at a time; changes that come
  // during a read make one more read after it.
  var reading = false;
  var again = false;
  function refresh() {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          location.assign(response.url);
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var now = fresh.getElementById(old.id);
          if (now) old.replaceWith(now);
        });
        localTimes(document);
        tick();
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
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
  function listen() {
    if (!window.EventSource || !document.querySelector("[data-live][id]")) return;
    var stream = new EventSource("/events");
    var cutOff = false;
    stream.addEventListener("ready", function () {
      document.documentElement.setAttribute("data-live-stream", "open");
      if (cutOff) refresh();
      cutOff = false;
    });
    stream.addEventListener("change", refresh);
    stream.addEventListener("error", function () {
      cutOff = true;
      document.documentElement.setAttribute("data-live-stream", "reconnecting");
    });
    window.addEventListener("pagehide", function () { stream.close(); });
  }

  localTimes(document);
  tick();
  setInterval(tick, 1000);
  listen();
})();
