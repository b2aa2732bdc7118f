// Writes the page's times in the browser's time zone and counts down running tickets.
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

  localTimes(document);
  tick();
  setInterval(tick, 1000);
})();
