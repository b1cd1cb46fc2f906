// What htmx cannot do on its own: show errors from 4xx/5xx responses (htmx does not swap them).
(function () {
  function toast(message, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const el = document.createElement("div");
    el.className = "toast " + (kind || "error");
    el.textContent = message;
    box.appendChild(el);
    setTimeout(() => el.remove(), 6000);
  }
  window.medsynthToast = toast;
  document.addEventListener("htmx:responseError", (evt) => {
    const xhr = evt.detail.xhr;
    let message = xhr.status + " " + xhr.statusText;
    try { message = JSON.parse(xhr.responseText).detail || message; } catch (e) { /* not JSON */ }
    toast(message, "error");
  });
  // An action on a list (archive, delete) marked data-reload shows its result by reloading.
  document.addEventListener("htmx:afterRequest", (evt) => {
    if (evt.detail.successful && evt.detail.elt.hasAttribute("data-reload")) location.reload();
  });
  document.addEventListener("htmx:sendError", () => toast("The server did not answer; try again.", "error"));
})();

// The Content-Security-Policy allows no inline handlers (onchange=...): a control marked
// data-autosubmit submits its form when it changes.
document.addEventListener("change", (evt) => {
  const el = evt.target instanceof Element ? evt.target.closest("[data-autosubmit]") : null;
  if (el && el.form) el.form.submit();
});
