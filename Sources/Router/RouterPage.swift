import Hummingbird

/// The page the router serves at `/`: chat, the cluster, live charts and placement's reasons, as plain HTML, CSS
/// and JavaScript embedded in the binary (`Page/`, SwiftPM `embedInCode` resources: no files to install beside
/// the executable, no build step, nothing fetched from elsewhere).
///
/// The page reads only the router's own endpoints: `/v1/models`, `/v1/chat/completions` (streamed), `/metrics`,
/// `/cluster/status` and `/cluster/explain`. Its policy forbids inline scripts and every other origin, so text a
/// model writes can never run as code even if it reached the document as HTML (the page renders it as text).
enum RouterPage {
    /// Paths served without an API key: the page asks for the key itself when the API answers 401.
    static let paths: Set<String> = ["/", "/page/app.js", "/page/style.css"]

    static func register<Context: RequestContext>(on router: Router<Context>) {
        router.get("/") { _, _ in asset(PackageResources.index_html, type: "text/html; charset=utf-8") }
        router.get("/page/app.js") { _, _ in asset(PackageResources.app_js, type: "text/javascript; charset=utf-8") }
        router.get("/page/style.css") { _, _ in asset(PackageResources.style_css, type: "text/css; charset=utf-8") }
    }

    /// Everything the page loads comes from this origin; nothing inline runs; the page cannot be framed.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    private static func asset(_ bytes: [UInt8], type: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: type, .cacheControl: "no-cache", .contentSecurityPolicy: contentSecurityPolicy,
                .xContentTypeOptions: "nosniff",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
