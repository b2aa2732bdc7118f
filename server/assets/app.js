// Counts down the minutes left of running tickets without reloading the page.
(function () {
  "use strict";
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-expires-at]").forEach(function (el) {
      var left = Number(el.getAttribute("data-expires-at")) - now;
      el.textContent = left > 0 ? Math.ceil(left / 60) + " min left" : "time is up";
    });
  }
  tick();
  setInterval(tick, 15000);
})();
