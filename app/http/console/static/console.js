// Ferry console: the little a server-rendered page needs to stay live. Everything shown
// goes through textContent, or is HTML the server rendered with escaping.
(function () {
  "use strict";

  // A form that would stop or delete work asks first.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var live = document.getElementById("live");
  var log = document.getElementById("event-log");
  var refreshTimer = null;
  var polling = false;

  function liveBody() {
    return live ? live.querySelector(".live-body") : null;
  }

  function isTerminal() {
    var body = liveBody();
    return !body || body.getAttribute("data-terminal") === "true";
  }

  // The parts of the page that change while a response runs are fetched again and swapped
  // in; what the reader has opened stays open.
  function refresh() {
    refreshTimer = null;
    if (!live) {
      return Promise.resolve();
    }
    return fetch(live.getAttribute("data-live-url"), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    })
      .then(function (reply) {
        return reply.ok ? reply.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var open = {};
        live.querySelectorAll("details[open]").forEach(function (el) {
          open[el.getAttribute("data-key")] = true;
        });
        live.innerHTML = html;
        live.querySelectorAll("details").forEach(function (el) {
          if (open[el.getAttribute("data-key")]) {
            el.open = true;
          }
        });
      })
      .catch(function () {});
  }

  function refreshSoon() {
    if (live && refreshTimer === null) {
      refreshTimer = window.setTimeout(refresh, 150);
    }
  }

  // Without an event log to follow, the page asks again every second until the end.
  function poll() {
    if (isTerminal()) {
      polling = false;
      return;
    }
    polling = true;
    window.setTimeout(function () {
      refresh().then(poll);
    }, 1000);
  }

  function tail() {
    var rows = log.querySelector("tbody");
    var status = document.getElementById("tail-status");
    var last = null;
    var source = new EventSource(log.getAttribute("data-events-url"));

    function cell(row, text) {
      var td = row.insertCell();
      td.textContent = text;
      return td;
    }

    function add(event) {
      var isDelta = /\.delta$/.test(event.type);
      if (last && isDelta && last.type === event.type && last.itemId === event.item_id) {
        // A run of deltas of one item is one line: its text, joined.
        last.count += 1;
        last.text += event.text;
        last.row.setAttribute("data-last-seq", String(event.seq));
        last.row.cells[0].textContent = last.first + "–" + event.seq;
        last.row.cells[1].textContent = event.type + " ×" + last.count;
        last.row.cells[2].textContent = last.text;
        return;
      }
      var row = rows.insertRow();
      row.setAttribute("data-seq", String(event.seq));
      row.setAttribute("data-last-seq", String(event.seq));
      row.setAttribute("data-type", event.type);
      cell(row, String(event.seq)).className = "num";
      cell(row, event.type);
      cell(row, event.text || "");
      last = isDelta
        ? { type: event.type, itemId: event.item_id, count: 1, first: event.seq, text: event.text, row: row }
        : null;
      if (!isDelta) {
        refreshSoon();
      }
    }

    source.onmessage = function (message) {
      add(JSON.parse(message.data));
      log.setAttribute("data-last-seq", message.lastEventId);
    };
    source.addEventListener("end", function () {
      source.close();
      status.textContent = "The log is complete.";
      log.setAttribute("data-complete", "true");
      refreshSoon();
    });
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) {
        status.textContent = "Connection lost; reconnecting…";
      }
    };
  }

  if (log && log.getAttribute("data-events-url")) {
    tail();
  } else if (live && !isTerminal() && !polling) {
    poll();
  }
})();
