// Reader study keys: 1-5 answer, u toggles "usable"; the time on the image goes with the answer.
(function () {
  let shownAt = performance.now();
  document.addEventListener("load", (e) => {
    if (e.target.id === "study-image") shownAt = performance.now();
  }, true);
  document.addEventListener("click", (e) => {  // capture: runs before htmx reads the form
    const button = e.target.closest("#answer-form button[name=rating]");
    if (button) button.form.client_ms.value = Math.round(performance.now() - shownAt);
  }, true);
  document.addEventListener("keydown", (e) => {
    const form = document.getElementById("answer-form");
    if (!form || e.ctrlKey || e.metaKey || e.altKey || e.target.matches("input[type=text], textarea")) return;
    if (e.key >= "1" && e.key <= "5") {
      e.preventDefault();
      form.querySelector('button[name=rating][value="' + e.key + '"]').click();
    } else if (e.key === "u" && form.usable) {
      e.preventDefault();
      form.usable.checked = !form.usable.checked;
    }
  });
})();
