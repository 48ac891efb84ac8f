// Saving a file fetched with the Authorization header (a plain link could not send it).

/** Saves `blob` as `name` through a temporary object URL. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
  // the download has taken the blob by then
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
