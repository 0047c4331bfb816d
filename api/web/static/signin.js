/* Sign-in: a token pasted from `zizhu token` (development), or one the identity provider hands back in the URL
   fragment (#access_token=…, never sent to the server in the URL). Either way the API decides if it is valid. */
"use strict";

(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  if (new URLSearchParams(location.search).get("expired")) Z.flash("登录已失效，请重新登录。", "error");
  async function enter(value, errorBox) {
    Z.setToken(value);
    const who = await Z.me();
    if (!who) {
      sessionStorage.removeItem("zizhu.token");
      if (errorBox) { errorBox.hidden = false; Z.fill(errorBox, "令牌无效或已过期，请重新获取。"); }
      else Z.flash("令牌无效或已过期，请重新登录。", "error");
      return;
    }
    location.href = Z.HOME[who.role] || "/";
  }
  if (params.get("access_token")) {
    const value = params.get("access_token");
    history.replaceState(null, "", "/");
    await enter(value, null);
    return;
  }
  const form = document.getElementById("signin-form");
  if (!form) return;
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const field = document.getElementById("token");
    const error = document.getElementById("token-error");
    if (!field.value.trim()) {
      error.hidden = false; field.setAttribute("aria-invalid", "true");
      Z.fill(error, "请粘贴访问令牌。");
      return;
    }
    await enter(field.value, error);
  });
})();
