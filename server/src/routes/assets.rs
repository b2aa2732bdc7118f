//! Static files, embedded in the binary so a LAN without internet still gets styled pages.

use rocket::http::{ContentType, Header};
use rocket::{get, routes, Responder, Route};

pub fn routes() -> Vec<Route> {
    routes![asset]
}

macro_rules! npm_asset {
    ($path:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/npm/node_modules/", $path))
    };
}

fn lookup(name: &str) -> Option<(ContentType, &'static [u8])> {
    Some(match name {
        "bootstrap.min.css" => (
            ContentType::CSS,
            npm_asset!("bootstrap/dist/css/bootstrap.min.css"),
        ),
        "bootstrap.bundle.min.js" => (
            ContentType::JavaScript,
            npm_asset!("bootstrap/dist/js/bootstrap.bundle.min.js"),
        ),
        "app.css" => (ContentType::CSS, include_bytes!("../../assets/app.css")),
        "app.js" => (
            ContentType::JavaScript,
            include_bytes!("../../assets/app.js"),
        ),
        "favicon.svg" => (ContentType::SVG, include_bytes!("../../assets/favicon.svg")),
        _ => return None,
    })
}

#[derive(Responder)]
struct Asset {
    body: (ContentType, &'static [u8]),
    cache: Header<'static>,
}

#[get("/static/<name>")]
fn asset(name: &str) -> Option<Asset> {
    lookup(name).map(|body| Asset {
        body,
        cache: Header::new("Cache-Control", "public, max-age=86400"),
    })
}
