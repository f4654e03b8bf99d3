// The login page: /login?failed=1 (the last attempt was refused) shows the message.
document.getElementById("login-failed").hidden = new URLSearchParams(location.search).get("failed") !== "1";
