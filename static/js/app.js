// Site behaviour. Loaded with `defer` after htmx.min.js. The CSP forbids
// inline scripts, so all client-side setup lives in this file.
//
// htmx reads <meta name="htmx-config"> and adds its indicator <style> on
// DOMContentLoaded. Deferred scripts run before that event, so setting
// htmx.config here takes effect before htmx processes the page.
(function () {
  "use strict";

  var htmx = window.htmx;
  if (!htmx) {
    return;
  }

  var config = htmx.config;

  // htmx would inject a <style> element, which style-src blocks. site.css
  // styles .htmx-indicator instead.
  config.includeIndicatorStyles = false;
  // No eval (hx-on, js: values, event filters) and no <script> from responses.
  config.allowEval = false;
  config.allowScriptTags = false;
  // Don't keep page snapshots (drafts, CSRF tokens) in localStorage. Back and
  // forward reload the page from the server.
  config.historyCacheSize = 0;
  config.refreshOnHistoryMiss = true;

  // Status codes whose HTML body should be swapped like a success: the server
  // renders the form with its errors (422), a "slow down" message (429),
  // a "not allowed" message (403), bad input (400) or a conflict (409).
  var SWAP_ERRORS = "^(400|403|409|422|429)$";

  // htmx tests each code as a regular expression against the status, first
  // match wins.
  config.responseHandling = [
    { code: "^204$", swap: false },
    { code: "^[23]..$", swap: true },
    { code: SWAP_ERRORS, swap: true, error: false },
    { code: "^[45]..$", swap: false, error: true },
    { code: "...", swap: false }
  ];

  var swapErrors = new RegExp(SWAP_ERRORS);
  var BANNER_ID = "htmx-error-banner";

  function isHtml(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    return type.toLowerCase().indexOf("text/html") === 0 && xhr.responseText !== "";
  }

  function messageFor(status) {
    if (status === 0) {
      return "Could not reach the server. Check your connection and try again.";
    }
    if (status === 401) {
      return "Your session has expired. Please sign in again.";
    }
    if (status === 403) {
      return "You are not allowed to do that. Reloading the page may help.";
    }
    if (status === 404) {
      return "That page or item no longer exists.";
    }
    if (status === 413) {
      return "That is too large to send.";
    }
    if (status === 429) {
      return "Too many requests. Please wait a moment and try again.";
    }
    if (status >= 500) {
      return "Something went wrong on our side. Please try again.";
    }
    return "The request could not be completed (error " + status + ").";
  }

  function hideBanner() {
    var banner = document.getElementById(BANNER_ID);
    if (banner) {
      banner.remove();
    }
  }

  function showBanner(text) {
    var banner = document.getElementById(BANNER_ID);
    if (!banner) {
      banner = document.createElement("div");
      banner.id = BANNER_ID;
      banner.className = "flash error";
      banner.setAttribute("role", "alert");

      var message = document.createElement("span");
      message.className = "flash-message";
      banner.appendChild(message);

      var close = document.createElement("button");
      close.type = "button";
      close.className = "flash-dismiss";
      close.setAttribute("aria-label", "Dismiss");
      close.textContent = "\u00d7";
      close.addEventListener("click", hideBanner);
      banner.appendChild(close);

      var main = document.querySelector("main") || document.body;
      main.insertBefore(banner, main.firstChild);
    }
    banner.querySelector(".flash-message").textContent = text;
  }

  document.addEventListener("htmx:beforeSwap", function (evt) {
    var detail = evt.detail;
    var xhr = detail.xhr;
    if (!xhr || xhr.status < 400) {
      return;
    }
    if (detail.boosted && isHtml(xhr)) {
      // A boosted link or form was answered with an error page. Show the
      // page, the same as a normal navigation would.
      detail.shouldSwap = true;
      detail.isError = false;
      return;
    }
    if (swapErrors.test(String(xhr.status)) && !isHtml(xhr)) {
      // Only swap an error response if it is HTML. Otherwise show the banner.
      detail.shouldSwap = false;
      detail.isError = true;
    }
  });

  document.addEventListener("htmx:responseError", function (evt) {
    showBanner(messageFor(evt.detail.xhr ? evt.detail.xhr.status : 0));
  });

  document.addEventListener("htmx:sendError", function () {
    showBanner(messageFor(0));
  });

  document.addEventListener("htmx:timeout", function () {
    showBanner(messageFor(0));
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.detail.successful) {
      hideBanner();
    }
  });

  // Server-rendered flash messages can be dismissed too.
  document.addEventListener("click", function (evt) {
    var target = evt.target;
    if (target instanceof Element && target.matches(".flash .flash-dismiss")) {
      var flash = target.closest(".flash");
      if (flash && flash.id !== BANNER_ID) {
        flash.remove();
      }
    }
  });

  // ---- Live updates (htmx-ext-sse; the stream is sse-connect on <body>) ----------
  //
  // Without JavaScript none of this runs and every page is complete as served.

  // The id of the last event received. EventSource resends it by itself
  // (Last-Event-ID) when it reconnects, but when the server answered an error the
  // extension gives up on that EventSource and opens a new one, which would forget
  // it: the new one asks for the events after it with ?after=.
  var lastEventId = "";

  function noteEventId(evt) {
    if (evt && evt.lastEventId) {
      lastEventId = evt.lastEventId;
    }
  }

  htmx.createEventSource = function (url) {
    if (lastEventId) {
      // Replaces the position the page was rendered with (sse-connect="…?after=N").
      url = url.replace(/([?&])after=[^&]*&?/, "$1").replace(/[?&]$/, "");
      url += (url.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(lastEventId);
    }
    return new EventSource(url, { withCredentials: true });
  };

  // A comment now in the list twice (the poster gets it from their own form's
  // response and from the stream; a resumed stream may replay one the page was
  // rendered with): keep the copy that was there first and drop the newcomer. New
  // ones arrive at the top (hx-swap="afterbegin"), so that is the last in the list.
  function dropDuplicateComments() {
    var list = document.getElementById("comments");
    if (!list) {
      return;
    }
    var seen = {};
    var items = list.querySelectorAll(":scope > li[id]");
    for (var i = items.length - 1; i >= 0; i--) {
      if (seen[items[i].id]) {
        items[i].remove();
      } else {
        seen[items[i].id] = true;
      }
    }
  }

  // `comment_deleted` carries the comment's DOM id (`comment-N`; a bare `N` or a
  // placeholder element with that id work too). The server keeps a deleted comment
  // that has replies as a "Comment deleted." placeholder above them, and drops one
  // without: the page does the same.
  function commentDeleted(evt) {
    noteEventId(evt);
    var data = String(evt.data || "").trim();
    var match = /^(?:comment-)?(\d+)$/.exec(data);
    if (match) {
      var gone = document.getElementById("comment-" + match[1]);
      if (!gone) {
        return;
      }
      if (gone.querySelector(".replies > li")) {
        var main = gone.querySelector(".comment-main");
        if (main) {
          var note = document.createElement("div");
          note.className = "comment-main";
          note.id = main.id;
          var text = document.createElement("p");
          text.className = "muted";
          text.textContent = "Comment deleted.";
          note.appendChild(text);
          main.replaceWith(note);
        }
        gone.classList.add("deleted");
        var replyForm = gone.querySelector(":scope > details.reply");
        if (replyForm) {
          replyForm.remove();
        }
      } else {
        gone.remove();
      }
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = data;
    var placeholder = template.content.firstElementChild;
    var old = placeholder && placeholder.id ? document.getElementById(placeholder.id) : null;
    if (old) {
      old.replaceWith(placeholder);
      htmx.process(placeholder);
    }
  }

  // `reply` carries the reply's <li data-parent-id="P">: it goes at the end of its
  // thread (#replies-P), once (the poster's own form response may have put it there).
  function replyArrived(evt) {
    noteEventId(evt);
    var template = document.createElement("template");
    template.innerHTML = String(evt.data || "").trim();
    var item = template.content.firstElementChild;
    if (!item || !item.id || document.getElementById(item.id)) {
      return;
    }
    var thread = document.getElementById("replies-" + item.getAttribute("data-parent-id"));
    if (thread) {
      thread.appendChild(item);
      htmx.process(item);
    }
  }

  // More was missed than the server replays (a long sleep, a long outage): offer a
  // reload rather than forcing one over a half-written comment.
  function missedUpdates(evt) {
    noteEventId(evt);
    if (document.getElementById("live-reload")) {
      return;
    }
    var note = document.createElement("div");
    note.id = "live-reload";
    note.className = "flash info";
    note.setAttribute("role", "status");
    note.appendChild(document.createTextNode("This page missed some updates. "));
    var reload = document.createElement("button");
    reload.type = "button";
    reload.className = "link-button";
    reload.textContent = "Reload it";
    reload.addEventListener("click", function () {
      window.location.reload();
    });
    note.appendChild(reload);
    var main = document.querySelector("main") || document.body;
    main.insertBefore(note, main.firstChild);
  }

  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail && evt.detail.source;
    if (!source || source.quireListening) {
      return;
    }
    source.quireListening = true;
    source.addEventListener("comment_deleted", commentDeleted);
    source.addEventListener("reply", replyArrived);
    source.addEventListener("reload", missedUpdates);
  });

  document.addEventListener("htmx:sseMessage", function (evt) {
    noteEventId(evt.detail);
    dropDuplicateComments();
  });

  document.addEventListener("htmx:afterSwap", dropDuplicateComments);
})();
