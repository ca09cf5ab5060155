// The thank-you page while a gift is being confirmed (the webhook stores Stripe's event and
// the event worker applies it, usually within a second): ask the small status answer every
// 2 seconds and reload the page once the gift is confirmed. Stops after 2 minutes; the page's
// "Check again" link works without this script.
(function () {
  "use strict";
  var box = document.querySelector("[data-confirm-status]");
  if (!box || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-confirm-status");
  var tries = 0;
  function later() {
    tries += 1;
    if (tries < 60) {
      window.setTimeout(check, 2000);
    }
  }
  function check() {
    window
      .fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (answer) {
        return answer.ok ? answer.json() : null;
      })
      .then(function (data) {
        if (data && data.confirmed) {
          window.location.reload();
        } else {
          later();
        }
      })
      .catch(later);
  }
  window.setTimeout(check, 1000);
})();
