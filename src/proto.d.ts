// .proto files are imported as text (`with { type: "text" }`) and embedded in the binary.
declare module "*.proto" {
  const text: string;
  export default text;
}
