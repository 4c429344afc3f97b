/* failure-aware dashboard: refresh the parts marked data-poll="SECONDS" while the tab is visible.
   One request at a time: the next is scheduled only after the previous one finished; a hidden tab
   schedules nothing until it is visible again. No inline script anywhere (the CSP forbids it). */
(function () {
  "use strict";
  function poll(id, seconds) {
    var timer = null;
    var busy = false;
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(tick, seconds * 1000);
    }
    function tick() {
      var el = document.getElementById(id);
      if (!el || busy) { return; }
      if (document.visibilityState !== "visible") { return; }  // resumed by visibilitychange
      busy = true;
      htmx.ajax("GET", window.location.pathname + window.location.search,
                {target: "#" + id, select: "#" + id, swap: "outerHTML"})
        .catch(function () { /* keep the page as it is; try again later */ })
        .then(function () { busy = false; schedule(); });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible" && !busy) { tick(); }
    });
    schedule();
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (typeof htmx === "undefined") { return; }
    var found = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < found.length; i++) {
      var seconds = parseInt(found[i].getAttribute("data-poll"), 10);
      if (found[i].id && seconds > 0) { poll(found[i].id, seconds); }
    }
  });
})();
