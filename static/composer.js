// The message box: a textarea that grows with its text, where Enter sends,
// Shift+Enter starts a new line, and Enter that ends an input method's
// composition (Korean, Japanese, Chinese) only ends the composition.

/** Wire `input` (a textarea) in `form`: Enter submits, the box grows. */
export function messageBox(form, input) {
  enterSubmits(form, input);
  window.addEventListener("resize", () => fitToText(input));
}

/**
 * Enter in `input` submits `form` (Shift+Enter starts a new line; an input
 * method's Enter only ends its composition), and the box grows with its text.
 */
export function enterSubmits(form, input) {
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.altKey) return;
    // keyCode 229 is what some browsers report for keys an IME is handling.
    if (event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    form.requestSubmit();
  });
  input.addEventListener("input", () => fitToText(input));
  fitToText(input);
}

/** Size the box to its text, up to its CSS max-height (then it scrolls). */
export function fitToText(input) {
  input.style.height = "auto";
  const border = input.offsetHeight - input.clientHeight;
  input.style.height = `${input.scrollHeight + border}px`;
}
