"""HTML of the on-call views (no template engine, everything escaped; runs in Airflow's plugin iframe).

Airflow renders an external view in an iframe sandboxed with ``allow-scripts allow-same-origin
allow-forms allow-downloads``. Same origin means the page's ``fetch`` carries the UI's own session
(the HttpOnly ``_token`` JWT cookie, SameSite=Lax), exactly as Airflow's UI calls its API. Without
``allow-popups`` a ``target=_blank`` link would do nothing, so KFP links open through the parent page.

Script on this origin could call Airflow's API with the viewer's session, so every value that comes
from the request, Airflow or KFP goes through ``escape``, and the page runs only its own ``<script>``
and ``<style>``, marked with the response's CSP nonce (:func:`content_security_policy`).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote, urlsplit

from kfp_bridge.plugins.service import RunView, TaskRef, format_duration

STATE_COLORS = {
    "SUCCEEDED": "#2e7d32",
    "FAILED": "#c62828",
    "CANCELED": "#6d4c41",
    "CANCELING": "#6d4c41",
    "RUNNING": "#1565c0",
    "PENDING": "#757575",
    "SKIPPED": "#9e9e9e",
    "PAUSED": "#757575",
    "success": "#2e7d32",
    "failed": "#c62828",
    "upstream_failed": "#ef6c00",
    "running": "#1565c0",
    "deferred": "#6a1b9a",
    "queued": "#757575",
    "scheduled": "#757575",
    "up_for_retry": "#f9a825",
    "skipped": "#9e9e9e",
}

STYLE = """
:root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 16px; color: #1f2933; background: #fff; font-size: 14px; }
h1 { font-size: 18px; margin: 0 0 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0 0 16px; }
dt { color: #52606d; } dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e4e7eb; vertical-align: top; }
th { color: #52606d; font-weight: 600; }
tr.failed td { background: #fdecea; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; background: #52606d; }
.error { color: #b71c1c; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; }
.note { color: #52606d; }
.panel { border: 1px solid #e4e7eb; border-radius: 6px; padding: 12px; margin: 12px 0; }
button { background: #c62828; color: #fff; border: 0; border-radius: 4px; padding: 8px 14px; font-size: 14px; cursor: pointer; }
button[disabled] { background: #9aa5b1; cursor: not-allowed; }
#retry-result.ok { color: #2e7d32; } #retry-result.refused { color: #b71c1c; }
a { color: #1565c0; }
""" + "".join(
    f'.badge[data-state="{state}"] {{ background: {color}; }}\n' for state, color in STATE_COLORS.items()
)

SCRIPT = """
(function () {
  var LAST = "kfp-bridge:last-action:" + location.pathname + location.search;
  var out = document.getElementById("retry-result");
  // The actions (Retry failed steps, Terminate KFP run): a JSON POST with the UI's own session
  // cookie, as Airflow's UI calls its API; the answer goes to #retry-result.
  document.querySelectorAll("button[data-url]").forEach(function (button) {
    button.addEventListener("click", function () {
      button.disabled = true;
      out.className = ""; out.textContent = button.dataset.pending;
      fetch(button.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: JSON.stringify({})
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok) {
            out.className = "ok"; out.textContent = body.message;
            sessionStorage.setItem(LAST, body.message);
            setTimeout(function () { location.reload(); }, 3000);
          } else {
            var detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
            out.className = "refused"; out.textContent = "Refused (HTTP " + response.status + "): " + detail;
            button.disabled = false;
          }
        });
      }).catch(function (err) {
        out.className = "refused"; out.textContent = "Request failed: " + err; button.disabled = false;
      });
    });
  });
  // Refresh while something moves; while KFP is unavailable each reload costs the api-server a KFP
  // call that fails slowly, so wait twice as long each time (10 s .. 2 min), per tab.
  var body = document.body, BACKOFF = "kfp-bridge:backoff:" + location.pathname + location.search;
  var seconds = 0;
  if (body.dataset.kfp === "unavailable") {
    seconds = Math.min(Number(sessionStorage.getItem(BACKOFF) || 5) * 2, 120);
    sessionStorage.setItem(BACKOFF, String(seconds));
    var note = document.getElementById("refresh-note");
    if (note) { note.textContent = "Trying KFP again in " + seconds + " s."; }
  } else {
    sessionStorage.removeItem(BACKOFF);
    if (body.dataset.active === "true") { seconds = 5; }
  }
  if (seconds) { setTimeout(function () { location.reload(); }, seconds * 1000); }
})();
"""

KFP_UNAVAILABLE = "KFP unavailable"


def content_security_policy(nonce: str) -> str:
    """The CSP of every HTML response: only this page's nonce-marked script and style run.

    ``connect-src 'self'`` is the retry POST; ``frame-ancestors 'self'`` lets only Airflow's own UI
    frame the page; nothing else (images, fonts, forms, plugins, ``<base>``) is needed.
    """
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )


def badge(state: str | None) -> str:
    text = escape(state or "none")
    return f'<span class="badge" data-state="{text}">{text}</span>'


def _link(url: str, text: str) -> str:
    # Only web links: a javascript: or data: URL from a connection's ui_host would run on click.
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return escape(text)
    return f'<a class="kfp-link" href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(text)}</a>'


def document(
    title: str, body: str, *, nonce: str, active: bool = False, kfp_unavailable: bool = False
) -> str:
    """The whole page; ``body`` is HTML built here from escaped values, ``nonce`` the response's CSP nonce."""
    nonce = escape(nonce)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><style nonce="{nonce}">{STYLE}</style></head>'
        f'<body data-active="{"true" if active else "false"}" '
        f'data-kfp="{"unavailable" if kfp_unavailable else "ok"}">'
        f'{body}<script nonce="{nonce}">{SCRIPT}</script></body></html>'
    )


def error_page(title: str, message: str, *, nonce: str) -> str:
    """A refusal or failure (404, 403...): the message names request values, so it is escaped too."""
    return document(title, f'<p class="error" id="error">{escape(message)}</p>', nonce=nonce)


def _problem(problem: str) -> str:
    label = "" if problem.startswith(KFP_UNAVAILABLE) else f"<strong>{KFP_UNAVAILABLE}.</strong> "
    return f'<p class="error" id="problem">{label}{escape(problem)}</p><p class="note" id="refresh-note"></p>'


def action_url(prefix: str, ref: TaskRef, action: str) -> str:
    path = "/".join(quote(part, safe="") for part in (ref.dag_id, ref.run_id, ref.task_id))
    return f"{prefix}/api/ti/{path}/{action}?map_index={ref.map_index}"


def retry_url(prefix: str, ref: TaskRef) -> str:
    return action_url(prefix, ref, "retry-failed-steps")


def ti_page(view: RunView, *, prefix: str, nonce: str) -> str:
    ref = view.ref
    label = ref.task_id if ref.map_index < 0 else f"{ref.task_id}[{ref.map_index}]"
    parts = [f"<h1>Kubeflow Pipelines run of {escape(label)}</h1>"]
    rows = [
        ("Airflow task", f"{escape(label)} {badge(view.task_state)} try {view.try_number}"),
        ("KFP connection", escape(view.conn_id)),
    ]
    if view.run_id:
        rows += [
            ("KFP run", f"{_link(view.run_url or '', view.run_name or view.run_id)} {badge(view.run_state)}"),
            ("Run id", f"<code>{escape(view.run_id)}</code> (found by {escape(view.run_found_by or '?')})"),
        ]
        if view.run_error:
            rows.append(("Run error", f'<span class="error">{escape(view.run_error)}</span>'))
    parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")

    if view.problem:
        parts.append(_problem(view.problem))
    if view.steps:
        failed = view.failed_steps
        summary = (
            f"Failed step{'s' if len(failed) > 1 else ''}: <strong>{escape(', '.join(failed))}</strong>"
            if failed
            else "No failed steps."
        )
        parts.append(f'<p id="failed-steps">{summary}</p>')
        table = [
            "<table id=steps><thead><tr><th>Step</th><th>State</th><th>Started</th><th>Duration</th><th>Error</th></tr></thead><tbody>"
        ]
        for step in view.steps:
            css = "failed" if step.state in ("FAILED", "CANCELED") else ""
            attempts = f' <span class="note">({step.attempts} attempts)</span>' if step.attempts > 1 else ""
            table.append(
                f'<tr class="{css}" data-step="{escape(step.name)}" data-state="{escape(step.state)}">'
                f"<td>{escape(step.name)}{attempts}</td><td>{badge(step.state)}</td>"
                f"<td>{escape((step.start_time or '—').replace('T', ' ')[:19])}</td>"
                f"<td>{format_duration(step.duration_seconds)}</td>"
                f'<td class="error">{escape(step.error or "")}</td></tr>'
            )
        table.append("</tbody></table>")
        parts.append("".join(table))
    elif view.run_id:
        parts.append('<p class="note">KFP reports no steps for this run yet.</p>')

    if view.is_kfp_task:
        disabled = "" if view.retryable else " disabled"
        reason = (
            "" if view.retryable else f'<p class="note" id="retry-reason">{escape(view.reason or "")}</p>'
        )
        # Offered only when it applies: the task stopped (e.g. marked failed) but its KFP run did not.
        terminate = (
            '<p><button id="terminate-kfp-run" type="button" '
            f'data-url="{escape(action_url(prefix, ref, "terminate-kfp-run"))}" '
            'data-pending="Asking KFP to terminate the run…">Terminate KFP run</button> '
            '<span class="note">The Airflow task is no longer running but its KFP run is: stop the run in '
            "KFP.</span></p>"
            if view.terminable
            else ""
        )
        parts.append(
            '<div class="panel"><button id="retry-failed-steps" type="button" '
            f'data-url="{escape(retry_url(prefix, ref))}" '
            f'data-pending="Asking KFP to retry the failed steps…"{disabled}>Retry failed steps</button> '
            '<span class="note">KFP reruns only the failed steps of this run; the Airflow task is cleared '
            "and follows the retried run.</span>"
            f'{reason}{terminate}<p id="retry-result" role="status"></p></div>'
        )
    else:
        parts.append(f'<p class="note" id="retry-reason">{escape(view.reason or "")}</p>')
    return document(
        f"KFP run of {label}",
        "".join(parts),
        nonce=nonce,
        active=view.active and view.is_kfp_task,
        kfp_unavailable=view.problem is not None,
    )


def dag_run_page(views: list[RunView], *, dag_id: str, run_id: str, prefix: str, nonce: str) -> str:
    parts = [f"<h1>Kubeflow Pipelines runs of {escape(dag_id)} / {escape(run_id)}</h1>"]
    if not views:
        parts.append('<p class="note">This DAG run has no KfpRunOperator tasks.</p>')
        return document("KFP runs", "".join(parts), nonce=nonce)
    table = [
        "<table id=runs><thead><tr><th>Task</th><th>Airflow</th><th>KFP run</th><th>Failed steps</th><th></th></tr></thead><tbody>"
    ]
    for view in views:
        ref = view.ref
        label = ref.task_id if ref.map_index < 0 else f"{ref.task_id}[{ref.map_index}]"
        run = (
            _link(view.run_url, view.run_name or view.run_id or "") + " " + badge(view.run_state)
            if view.run_url
            else escape(view.reason or "no run")
        )
        path = "/".join(quote(part, safe="") for part in (ref.dag_id, ref.run_id, ref.task_id))
        details = f'<a href="{escape(prefix)}/ti/{path}?map_index={ref.map_index}">steps</a>'
        css = "failed" if view.failed_steps else ""
        table.append(
            f'<tr class="{css}" data-task="{escape(label)}"><td>{escape(label)}</td><td>{badge(view.task_state)}</td>'
            f"<td>{run}</td><td>{escape(', '.join(view.failed_steps))}</td><td>{details}</td></tr>"
        )
    table.append("</tbody></table>")
    parts.append("".join(table))
    problems = [view.problem for view in views if view.problem]
    if problems:
        parts.append(_problem(problems[0]))
    active = any(view.active for view in views)
    return document("KFP runs", "".join(parts), nonce=nonce, active=active, kfp_unavailable=bool(problems))
