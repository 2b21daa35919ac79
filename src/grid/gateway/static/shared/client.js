/* What the portal and the console share: the API client (problem+json errors naming their field) and money
 * formatting (integer cents until the last string). Loaded before each page's own script; no build step. */
(function (ns) {
  "use strict";
  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.field = problem.field;
    }
  }
  /* `api(path, {method, body})` with the bearer key `getKey()` returns; throws ApiError on a non-2xx. */
  function client(getKey) {
    return async function api(path, { method = "GET", body } = {}) {
      const headers = { Authorization: `Bearer ${getKey()}`, Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
      if (!r.ok) throw new ApiError(r.status, data || {});
      return data;
    };
  }
  /* Fetch `path` with the key and hand it to the browser as a file named `filename` (a plain link cannot carry
   * the Authorization header). */
  async function download(getKey, path, filename) {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${getKey()}` } });
    if (!r.ok) {
      let problem = {};
      try { problem = await r.json(); } catch (e) { problem = { detail: `HTTP ${r.status}` }; }
      throw new ApiError(r.status, problem);
    }
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  function money(cents) {
    const abs = Math.abs(Math.trunc(cents));
    return `${cents < 0 ? "−" : ""}$${Math.floor(abs / 100).toLocaleString("en-US")}.${String(abs % 100).padStart(2, "0")}`;
  }
  ns.ApiError = ApiError;
  ns.client = client;
  ns.money = money;
  ns.download = download;
})((window.contextgrid = window.contextgrid || {}));
