//! Tools the report tests drive: Debian's headless Chromium (element counts and overflow via
//! `--dump-dom` of a measuring copy of the page, a screenshot, a printed PDF) and the local
//! aiosmtpd STARTTLS server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Debian's `chromium`, if installed.
pub fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|n| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(n))
                .find(|f| f.is_file())
        })
    })
}

fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--allow-file-access-from-files",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

const MEASURE: &str = r#"<script>
(function(){
  var w = document.documentElement.clientWidth, over = 0, list = [];
  document.querySelectorAll('body *').forEach(function(e){
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > w + 0.5) { over++; if (list.length < 8) list.push(e.tagName + '.' + e.className + ':' + Math.round(r.right)); }
  });
  var res = {
    charts: document.querySelectorAll('svg.chart').length,
    chart_paths: document.querySelectorAll('svg.chart polyline, svg.chart path').length,
    chart_bars: document.querySelectorAll('svg.chart rect').length,
    tables: document.querySelectorAll('table').length,
    rows: document.querySelectorAll('tr').length,
    sections: document.querySelectorAll('section').length,
    scroll_width: document.documentElement.scrollWidth,
    client_width: w,
    overflowing: over,
    examples: list
  };
  var pre = document.createElement('pre'); pre.id = 'sg-measure';
  pre.textContent = JSON.stringify(res); document.body.appendChild(pre);
})();
</script>"#;

/// Load a measuring copy of `html` at `width` CSS px and return what the script measured.
pub fn measure(chromium: &Path, html: &Path, width: u32, work: &Path) -> Value {
    let page = std::fs::read_to_string(html).unwrap();
    let copy = work.join(format!("measure-{width}.html"));
    std::fs::write(&copy, page.replace("</body>", &format!("{MEASURE}</body>"))).unwrap();
    let o = headless(chromium, &work.join("chromium-profile"))
        .arg(format!("--window-size={width},1200"))
        .arg("--dump-dom")
        .arg(url(&copy))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    let start = dom.find("<pre id=\"sg-measure\">").unwrap_or_else(|| {
        panic!(
            "chromium gave no measurement: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    }) + "<pre id=\"sg-measure\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let json = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

/// A screenshot of the page at A4 width.
pub fn screenshot(chromium: &Path, html: &Path, png: &Path, work: &Path) {
    let _ = std::fs::remove_file(png);
    let o = headless(chromium, &work.join("chromium-profile"))
        .arg("--window-size=794,2600")
        .arg(format!("--screenshot={}", png.display()))
        .arg(url(html))
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Print the page to PDF as a browser would (the page's print stylesheet, A4).
pub fn print_pdf(chromium: &Path, html: &Path, pdf: &Path, work: &Path) {
    let _ = std::fs::remove_file(pdf);
    let o = headless(chromium, &work.join("chromium-profile"))
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(url(html))
        .output()
        .unwrap();
    assert!(
        pdf.exists(),
        "no PDF: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn has_aiosmtpd() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// aiosmtpd on 127.0.0.1 with STARTTLS required; killed on drop.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
}

impl SmtpServer {
    pub fn start(dir: &Path, inbox: &Path) -> SmtpServer {
        let port = crate::common::net::free_port();
        let script = crate::common::files::root().join("tests/it/report/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .arg(inbox)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        SmtpServer { child, port }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
