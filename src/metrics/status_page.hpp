// SPDX-License-Identifier: Apache-2.0
// The status page (docs/operations.md, "The status page"): one self-contained HTML document (its
// style and script inline, nothing fetched from elsewhere) that reads /status.json every second
// and renders the broker's or the gateway's status. Everything from the network is put in the
// page as text (textContent, attributes), never as markup.
#pragma once

#include <string>
#include <string_view>

namespace scale0::metrics {

// The page, its <style> and <script> carrying `nonce` (base64 characters only).
std::string status_page_html(std::string_view nonce);
// The Content-Security-Policy that goes with it: only that script and style, requests to this
// origin only, no frames, no forms, no plugins.
std::string status_page_csp(std::string_view nonce);

}  // namespace scale0::metrics
