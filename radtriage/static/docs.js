// /docs: Swagger UI (from the fastapi-offline package's assets, served by radtriage) for this API.
// It follows the worklist page's sign-in: the personal token the page keeps in this tab's
// sessionStorage goes with every request, the schema's included; or use "Authorize".
"use strict";
const TOKEN_KEY = "radtriage.token"; // the page's key (app.js)

function withToken(request) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token && !request.headers.Authorization) request.headers.Authorization = `Bearer ${token}`;
  return request;
}

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  requestInterceptor: withToken,
});
