// The page's files and uPlot's are imported as text (`with { type: "text" }`)
// and embedded in the binary (assets.ts).
declare module "./page/*" {
  const text: string;
  export default text;
}
declare module "uplot/dist/*" {
  const text: string;
  export default text;
}
